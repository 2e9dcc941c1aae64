"""UTM values from landing page URLs: awkward URLs, macros and inferred defaults."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiktok_amp_assets.core.utms import (
    DEFAULT_UTM_MEDIUM,
    DEFAULT_UTM_SOURCE,
    NOT_SET,
    UTM_KEYS,
    LandingPageUtms,
    landing_page_utms,
    utm_params_of,
    with_utm_params,
)

AD = {
    "campaign_name": "Black Friday",
    "ad_name": "Video A",
    "adgroup_name": "US 18-34",
    "campaign_id": "1800000000000000001",
    "adgroup_id": "1810000000000000001",
    "ad_id": "1790000000000000001",
}


def utms(url: str | None, **overrides: str) -> LandingPageUtms:
    return landing_page_utms(url, **{**AD, **overrides})


def values(result: LandingPageUtms) -> tuple[str, str, str, str]:
    return result.utm_source, result.utm_medium, result.utm_campaign, result.utm_content


def test_all_four_from_the_query() -> None:
    result = utms(
        "https://shop.example/p?utm_source=tt&utm_medium=cpc&utm_campaign=bf26&utm_content=vid_a&x=1"
    )
    assert values(result) == ("tt", "cpc", "bf26", "vid_a")
    assert result.inferred == frozenset()


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "   ",
        "https://shop.example/p",
        "https://shop.example/p?",
        "not a url",
        "-",
        "utm_source=tt",
        "https://shop.example/p?ref=home",
        "http://[::1/?utm_source=x",
    ],
)
def test_defaults_when_nothing_usable(url: str | None) -> None:
    result = utms(url)
    assert values(result) == (DEFAULT_UTM_SOURCE, DEFAULT_UTM_MEDIUM, "Black Friday", "Video A")
    assert result.inferred == frozenset(UTM_KEYS)


def test_defaults_are_tiktok_and_paid_social() -> None:
    assert (DEFAULT_UTM_SOURCE, DEFAULT_UTM_MEDIUM) == ("tiktok", "paid_social")


def test_each_absent_key_is_inferred_independently() -> None:
    result = utms("https://shop.example/?utm_medium=influencer&utm_content=hero")
    assert values(result) == ("tiktok", "influencer", "Black Friday", "hero")
    assert result.inferred == {"utm_source", "utm_campaign"}


def test_percent_encoding_and_plus_as_space() -> None:
    result = utms("https://shop.example/?utm_campaign=Black+Friday%202026&utm_content=50%25%20off%2Bmore")
    assert result.utm_campaign == "Black Friday 2026"
    assert result.utm_content == "50% off+more"


def test_unicode_values_percent_encoded_and_raw() -> None:
    result = utms(
        "https://shop.example/?utm_campaign=%E5%86%AC%E3%82%BB%E3%83%BC%E3%83%AB&utm_content=café 🎉"
    )
    assert result.utm_campaign == "冬セール"
    assert result.utm_content == "café 🎉"


def test_invalid_utf8_percent_escape_does_not_raise() -> None:
    assert utms("https://shop.example/?utm_campaign=%FF%FE").utm_campaign == "\ufffd\ufffd"


def test_keys_match_case_insensitively() -> None:
    result = utms("https://shop.example/?UTM_Source=TikTok&Utm_Medium=Paid")
    # Keys are normalized, values are kept as written: the site records them as written.
    assert (result.utm_source, result.utm_medium) == ("TikTok", "Paid")


def test_repeated_key_first_non_empty_wins() -> None:
    result = utms("https://shop.example/?utm_source=&utm_source=first&utm_source=second&UTM_SOURCE=third")
    assert result.utm_source == "first"
    assert "utm_source" not in result.inferred


def test_empty_and_blank_values_are_absent() -> None:
    result = utms("https://shop.example/?utm_source=&utm_medium=%20%20&utm_campaign=+")
    assert values(result) == ("tiktok", "paid_social", "Black Friday", "Video A")
    assert result.inferred == frozenset(UTM_KEYS)


def test_surrounding_whitespace_is_stripped() -> None:
    assert utms("https://shop.example/?utm_source=%20tt%09").utm_source == "tt"


def test_query_in_fragment() -> None:
    result = utms("https://shop.example/#/product?utm_source=spa&utm_campaign=hash")
    assert (result.utm_source, result.utm_campaign) == ("spa", "hash")


def test_real_query_wins_over_fragment_query() -> None:
    result = utms("https://shop.example/?utm_source=real#/p?utm_source=frag&utm_medium=frag_medium")
    assert result.utm_source == "real"
    assert result.utm_medium == "frag_medium"


def test_fragment_without_query_is_ignored() -> None:
    assert utms("https://shop.example/p#utm_source=anchor").utm_source == "tiktok"


def test_macros_are_replaced_by_the_ads_values() -> None:
    url = (
        "https://shop.example/?utm_source=tiktok&utm_campaign=__CAMPAIGN_NAME__-__CAMPAIGN_ID__"
        "&utm_medium=__AID_NAME__|__AID__&utm_content=__CID_NAME__%20(__CID__)"
    )
    result = utms(url)
    assert result.utm_campaign == "Black Friday-1800000000000000001"
    assert result.utm_medium == "US 18-34|1810000000000000001"
    assert result.utm_content == "Video A (1790000000000000001)"
    assert result.inferred == frozenset()


def test_unknown_macros_stay_as_written() -> None:
    assert utms("https://shop.example/?utm_content=__PLACEMENT__-__CID__").utm_content == (
        "__PLACEMENT__-1790000000000000001"
    )


def test_macro_inside_a_name_is_not_replaced_again() -> None:
    result = utms("https://shop.example/?utm_content=__CID_NAME__", ad_name="ad __CID__")
    assert result.utm_content == "ad __CID__"


def test_macro_that_resolves_to_nothing_is_absent() -> None:
    result = utms("https://shop.example/?utm_medium=__AID_NAME__", adgroup_name="")
    assert result.utm_medium == "paid_social"
    assert "utm_medium" in result.inferred


def test_empty_names_fall_back_to_ids_then_not_set() -> None:
    result = utms(None, campaign_name="", ad_name="  ")
    assert (result.utm_campaign, result.utm_content) == ("1800000000000000001", "1790000000000000001")
    result = utms(None, campaign_name="", ad_name="", campaign_id="", ad_id="")
    assert (result.utm_campaign, result.utm_content) == (NOT_SET, NOT_SET)
    assert NOT_SET == "(not set)"


def test_result_is_frozen() -> None:
    result = utms(None)
    with pytest.raises(ValueError):
        result.utm_source = "x"  # type: ignore[misc]


@given(st.one_of(st.none(), st.text()), st.text(), st.text(), st.text())
def test_never_raises_on_any_text(url: str | None, campaign_name: str, ad_name: str, ad_id: str) -> None:
    result = landing_page_utms(url, campaign_name=campaign_name, ad_name=ad_name, ad_id=ad_id)
    for value in values(result):
        assert value and value == value.strip()
    assert result.inferred <= set(UTM_KEYS)


_url_piece = st.sampled_from(
    [
        "https://",
        "shop.example",
        "/",
        "?",
        "#",
        "&",
        "=",
        "utm_source",
        "UTM_CAMPAIGN",
        "utm_content",
        "%",
        "%2",
        "%E5",
        "+",
        " ",
        "__CID__",
        "__CAMPAIGN_NAME__",
        "[",
        "]",
        ":",
        "\x00",
        "é",
        "\ud800",
    ]
)


@given(st.lists(_url_piece, max_size=20).map("".join))
def test_never_raises_on_url_shaped_text(url: str) -> None:
    landing_page_utms(url, campaign_name="C", ad_name="A")


# ----- utm_params (TikTok's URL-parameter builder)


def test_utm_params_are_read_from_ad_get_or_a_smart_plus_ad_tolerantly() -> None:
    assert utm_params_of(
        {"utm_params": [{"key": "utm_source", "value": "a"}, {"key": " ", "value": "x"}]}
    ) == (("utm_source", "a"),)
    smart_plus = {"smart_plus_ad": {"ad_configuration": {"utm_params": [{"key": "k", "value": None}]}}}
    assert utm_params_of(smart_plus) == (("k", ""),)
    for junk in (
        None,
        {},
        {"utm_params": None},
        {"utm_params": "utm_source=a"},
        {"utm_params": [["k", "v"]]},
    ):
        assert utm_params_of(junk) == ()


def test_utm_params_are_appended_and_a_key_the_url_has_stays_as_written() -> None:
    params = (("utm_source", "builder"), ("utm_medium", "cpc"), ("utm_term", "tent stove"))
    assert with_utm_params("https://shop.example/p?UTM_Source=Mine#reviews", params) == (
        "https://shop.example/p?UTM_Source=Mine&utm_medium=cpc&utm_term=tent+stove#reviews"
    )
    # A key in a query inside the fragment (single-page apps) counts as written too.
    assert with_utm_params("https://shop.example/#/p?utm_medium=app", params) == (
        "https://shop.example/?utm_source=builder&utm_term=tent+stove#/p?utm_medium=app"
    )
    assert with_utm_params(None, params) is None
    assert with_utm_params("https://shop.example/p", ()) == "https://shop.example/p"
    utms = landing_page_utms(
        with_utm_params("https://shop.example/p", params), campaign_name="C", ad_name="A"
    )
    assert (utms.utm_source, utms.utm_medium) == ("builder", "cpc")


def test_utm_param_values_with_macros_are_resolved_like_the_urls() -> None:
    url = with_utm_params(
        "https://shop.example/p", (("utm_campaign", "__CAMPAIGN_NAME__"), ("utm_content", "__CID__"))
    )
    utms = landing_page_utms(url, campaign_name="Été – Soldes", ad_name="A", ad_id="17")
    assert (utms.utm_campaign, utms.utm_content) == ("Été – Soldes", "17")
