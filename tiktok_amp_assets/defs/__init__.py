"""The connections of this code location: one folder each, holding its ``defs.yaml``
(``tiktok_amp_assets.TikTokAdsToAmplitude``, component.py). Add one by copying ``tiktok_ads/``
(README, "Several clients: connections")."""
