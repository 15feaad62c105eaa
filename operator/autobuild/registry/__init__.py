"""The registry side: push credentials, push preflight, digest checks, repository settings.

Effects are async (aiohttp) and take an optional shared ``aiohttp.ClientSession``; the decisions
(which config entry, which API calls to make, whether digests match) are pure functions.
"""
