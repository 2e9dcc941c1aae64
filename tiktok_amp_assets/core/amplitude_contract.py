"""Amplitude's ingestion API as the client reads it, each fact with its public source.

The Amplitude emulator (``emulators/``) reads the same sources on its own and never imports this
module; ``docs/api_facts.md`` lists every fact with the test that fails if either side misreads it.
Pages: HTTP V2 https://amplitude.com/docs/apis/analytics/http-v2, Batch Event Upload
https://amplitude.com/docs/apis/analytics/batch-event-upload, "Which API should I use?"
https://amplitude.com/docs/faq/api-choice.
"""

from __future__ import annotations

# Ingestion hosts ("Regions" on both API pages); EU projects use https://api.eu.amplitude.com.
DEFAULT_API_URL = "https://api2.amplitude.com"
HTTP_V2_PATH = "/2/httpapi"
BATCH_PATH = "/batch"

EVENT_TYPE = "Daily Ad Metrics"
AD_PLATFORM = "tiktok"

# Events per request, on both endpoints; more is a 413. HTTP V2 page ("Upload limit": up to 2,000
# events per request) and Batch Event Upload page (413 row: "The limit per batch is 2000 events").
MAX_EVENTS_PER_REQUEST = 2000
# Bytes per request, of the JSON (gzip decompressed): HTTP V2 under 1 MB; Batch "must not exceed
# 20MB". The client stays strictly below both.
HTTP_V2_MAX_BYTES = 1_000_000
BATCH_MAX_BYTES = 20_000_000

# "Device IDs and user IDs must be strings of 5 characters or more" unless options.min_id_length
# lowers it (Batch Event Upload page; HTTP V2 page, "options").
MIN_ID_LENGTH = 5
# String property values longer than this are truncated by Amplitude (HTTP V2 page, event fields);
# we cut them ourselves.
MAX_STRING_LENGTH = 1024

# Events per second one device or user may send: HTTP V2 30, "measured as an average over a recent
# time window" (api-choice FAQ); Batch "up to 1000 events per second for any individual device ID or
# user ID" (Batch Event Upload page). Past it: a 429 naming the ids.
HTTP_V2_EPS_PER_DEVICE = 30
BATCH_EPS_PER_DEVICE = 1000
# After such a 429, "pause sending events for that user or device for 30 seconds" (api-choice FAQ).
THROTTLE_PAUSE_SECONDS = 30.0

# Starter plan on HTTP V2: "Limit your upload to 100 batches per second and 1000 events per second"
# (HTTP V2 page, "Upload limit"). Not enforced by default: other plans have other limits.
STARTER_PLAN_EVENTS_PER_SECOND = 1000
