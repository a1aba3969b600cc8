"""The currencies a purchase may be made in: the active ISO 4217 currencies.

ISO 4217 "list one" (SIX, published 2025-03-31) less the codes that are not money a
customer pays with: the funds (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW), the
precious metals (XAG, XAU, XPD, XPT), the bond-market units (XBA, XBB, XBC, XBD), the
supranational units of account (XDR, XSU, XUA), the testing code XTS and XXX ("no
currency"). Codes withdrawn from the list are not active either: ANG (replaced by XCG
in 2025), CUC, SLL (replaced by SLE), ZWL (replaced by ZWG).

A short, stable table, kept here rather than pulling in a locale database for it;
``tests/unit/test_commands.py`` pins its size and the excluded codes.
"""

from __future__ import annotations

# fmt: off
ACTIVE: frozenset[str] = frozenset((
        "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
        "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
        "CAD", "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK",
        "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP",
        "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD",
        "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD",
        "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD",
        "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN",
        "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG",
        "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP",
        "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND",
        "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VED", "VES",
        "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
))
# fmt: on
