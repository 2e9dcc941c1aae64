"""TikTok Ads daily ad metrics into Amplitude, as Dagster assets.

Importing the package changes nothing in the importing process. The settings of the process that a
range run benefits from (Arrow's memory pool, glibc's malloc arenas) are environment variables set
where the process starts: docs/performance.md, "Settings of the process".
"""
