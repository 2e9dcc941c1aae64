"""UTM parameters of an ad, read from its landing page URL as a click reaches it.

Amplitude's marketing dashboards join ad spend to product events by the ``utm_*`` values, so the
values here must be the ones the site's own tracking records when someone clicks the ad. Rules:

- The URL is the ad's landing page with the ad's ``utm_params`` appended, as TikTok appends them at
  click time (:func:`with_utm_params`): parameters set with TikTok's URL-parameter builder, a list of
  ``{key, value}`` on ``ad/get`` items (singer-io/tap-tiktok-ads ``schemas/ads.json``, the SDK's
  ``AdcreateUtmParams``) and in ``ad_configuration`` of Smart+ ads (the SDK's
  ``smart_plus_ad_get.yml``; :func:`utm_params_of`). A key the landing page already has is left as
  the URL writes it and not appended again: were both sent, the URL's own value would come first in
  the query, and the first occurrence is the one browsers' ``URLSearchParams.get`` and analytics
  SDKs read (and the rule below).

- The query string of the URL is read (``https://shop.example/p?utm_source=tiktok``). A query inside
  the fragment (``https://shop.example/#/p?utm_source=tiktok``, single-page apps) is read too, but
  only for keys the real query does not have.
- Keys match case-insensitively, ignoring surrounding whitespace (``UTM_Source`` is ``utm_source``).
- Values are percent-decoded and ``+`` is a space (form encoding, as browsers and analytics SDKs
  read them); surrounding whitespace is stripped.
- A key repeated in the query: the first non-empty value wins. An empty value counts as absent.
- TikTok's dynamic URL macros in a value are replaced by the ad's own values, as TikTok does at
  click time: ``__CAMPAIGN_NAME__`` → campaign name, ``__CAMPAIGN_ID__`` → campaign id,
  ``__AID_NAME__`` → ad group name, ``__AID__`` → ad group id, ``__CID_NAME__`` → ad name,
  ``__CID__`` → ad id. Other macros (``__PLACEMENT__``, ...) are kept as written. A value that is
  empty after replacement counts as absent.
- Each of the four keys that is absent gets an inferred default, independently of the others:
  ``utm_source=tiktok``, ``utm_medium=paid_social``, ``utm_campaign=<campaign name>``,
  ``utm_content=<ad name>``; an empty campaign / ad name falls back to the campaign / ad id, and if
  that is empty too, to ``(not set)``. ``inferred`` lists the keys filled this way.
- No URL, an empty URL, a URL without a query and text that is not a URL at all all give the four
  defaults. Nothing here raises on any input text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict

UTM_SOURCE = "utm_source"
UTM_MEDIUM = "utm_medium"
UTM_CAMPAIGN = "utm_campaign"
UTM_CONTENT = "utm_content"
UTM_KEYS = (UTM_SOURCE, UTM_MEDIUM, UTM_CAMPAIGN, UTM_CONTENT)
# An ad's URL-parameter builder pairs, in TikTok's order: (key, value).
UtmParams = tuple[tuple[str, str], ...]

DEFAULT_UTM_SOURCE = "tiktok"
DEFAULT_UTM_MEDIUM = "paid_social"
# Last resort for utm_campaign / utm_content when the ad has neither a name nor an id.
NOT_SET = "(not set)"

# One pass of one pattern: a macro inside a replaced name is not replaced again, and the longer
# macros come first in the alternation so they win over any shorter one.
_MACROS = ("__CAMPAIGN_NAME__", "__CAMPAIGN_ID__", "__AID_NAME__", "__CID_NAME__", "__AID__", "__CID__")
_MACRO_PATTERN = re.compile("|".join(re.escape(m) for m in sorted(_MACROS, key=len, reverse=True)))


class LandingPageUtms(BaseModel):
    """The four UTM values of an ad; ``inferred`` names those filled by default."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    utm_source: str
    utm_medium: str
    utm_campaign: str
    utm_content: str
    inferred: frozenset[str]


def _query_parts(landing_page_url: str) -> tuple[str, str]:
    """The URL's query and the query inside its fragment (``""`` when absent or unparsable)."""
    try:
        parts = urlsplit(landing_page_url)
    except ValueError:  # e.g. "http://[::1" (bad IPv6 host) or a host invalid under NFKC
        return "", ""
    _, _, fragment_query = parts.fragment.partition("?")
    return parts.query, fragment_query


def is_web_url(text: str) -> bool:
    """Whether ``text`` is an http(s) URL with a host (a landing page, not a deep link or a note)."""
    try:
        parts = urlsplit(text.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _first_values(query: str) -> dict[str, str]:
    """Lower-cased utm key -> first non-empty, decoded, stripped value."""
    found: dict[str, str] = {}
    # parse_qsl decodes %XX and "+"; invalid UTF-8 becomes U+FFFD instead of raising.
    for key, value in parse_qsl(query, keep_blank_values=True):
        name = key.strip().lower()
        text = value.strip()
        if name in UTM_KEYS and name not in found and text:
            found[name] = text
    return found


def _first_present(*candidates: str) -> str:
    for candidate in candidates:
        if candidate.strip():
            return candidate.strip()
    return NOT_SET


@functools.lru_cache(maxsize=65_536)  # an ad's URL and names repeat on every day of a backfill
def landing_page_utms(
    landing_page_url: str | None,
    *,
    campaign_name: str,
    ad_name: str,
    adgroup_name: str = "",
    campaign_id: str = "",
    adgroup_id: str = "",
    ad_id: str = "",
) -> LandingPageUtms:
    """The UTM values of an ad whose landing page is ``landing_page_url`` (rules: module docstring)."""
    query, fragment_query = (
        ("", "") if not isinstance(landing_page_url, str) else _query_parts(landing_page_url)
    )
    values = _first_values(fragment_query) | _first_values(query)  # the real query wins

    macro_values = {
        "__CAMPAIGN_NAME__": campaign_name,
        "__CAMPAIGN_ID__": campaign_id,
        "__AID_NAME__": adgroup_name,
        "__AID__": adgroup_id,
        "__CID_NAME__": ad_name,
        "__CID__": ad_id,
    }
    resolved: dict[str, str] = {}
    for key, value in values.items():
        text = _MACRO_PATTERN.sub(lambda match: macro_values[match.group(0)], value).strip()
        if text:
            resolved[key] = text

    defaults = {
        UTM_SOURCE: DEFAULT_UTM_SOURCE,
        UTM_MEDIUM: DEFAULT_UTM_MEDIUM,
        UTM_CAMPAIGN: _first_present(campaign_name, campaign_id),
        UTM_CONTENT: _first_present(ad_name, ad_id),
    }
    inferred = frozenset(key for key in UTM_KEYS if key not in resolved)
    return LandingPageUtms(
        utm_source=resolved.get(UTM_SOURCE, defaults[UTM_SOURCE]),
        utm_medium=resolved.get(UTM_MEDIUM, defaults[UTM_MEDIUM]),
        utm_campaign=resolved.get(UTM_CAMPAIGN, defaults[UTM_CAMPAIGN]),
        utm_content=resolved.get(UTM_CONTENT, defaults[UTM_CONTENT]),
        inferred=inferred,
    )


def utm_params_of(ad_item: Mapping[str, Any] | None) -> UtmParams:
    """The ad's URL-parameter builder pairs: ``utm_params`` of its ``ad/get`` item, else
    ``ad_configuration.utm_params`` of the Smart+ ad the extraction attached as ``smart_plus_ad``.

    Read tolerantly: entries that are no ``{key, value}`` of strings, or whose key is blank, are
    skipped; a null value counts as empty."""
    if not ad_item:
        return ()
    entries = ad_item.get("utm_params")
    if not entries:
        smart_plus = ad_item.get("smart_plus_ad")
        configuration = smart_plus.get("ad_configuration") if isinstance(smart_plus, Mapping) else None
        entries = configuration.get("utm_params") if isinstance(configuration, Mapping) else None
    if not isinstance(entries, list):
        return ()
    pairs: list[tuple[str, str]] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        key, value = entry.get("key"), entry.get("value")
        if isinstance(key, str) and key.strip() and isinstance(value, str | None):
            pairs.append((key, value or ""))
    return tuple(pairs)


def with_utm_params(landing_page_url: str | None, params: UtmParams) -> str | None:
    """``landing_page_url`` as a click reaches it: the ``params`` whose key the URL does not have yet
    (in its query, or in a query inside its fragment; keys compared as the rules above match them)
    appended to the query, form-encoded, before any fragment. No URL stays no URL; text that is not
    a URL is left as it is."""
    if not landing_page_url or not params:
        return landing_page_url
    try:
        parts = urlsplit(landing_page_url)
    except ValueError:
        return landing_page_url
    present = {
        key.strip().lower()
        for query in _query_parts(landing_page_url)
        for key, _ in parse_qsl(query, keep_blank_values=True)
    }
    added: list[tuple[str, str]] = []
    for key, value in params:
        name = key.strip().lower()
        if name not in present:
            present.add(name)
            added.append((key, value))
    if not added:
        return landing_page_url
    # Macros (__CAMPAIGN_NAME__) keep their underscores; spaces become "+", as forms encode them.
    query = "&".join(part for part in (parts.query, urlencode(added)) if part)
    return urlunsplit(parts._replace(query=query))
