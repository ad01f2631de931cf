"""parse_browser_url reads URLs as browsers do: the WHATWG URL Standard.

The expected URLs were produced by a reference implementation of the
standard, Node.js 20's ``new URL(input).href`` (the ada parser), on each
input; ``None`` is where it throws. Probes: backslashes, slashes after the
scheme, tabs and line breaks, userinfo, percent-encoded hosts, IDNA
(fullwidth, Cyrillic, upper case), IPv4 in every notation, IPv6, ports, dot
segments, percent-encoding of path, query and fragment, other schemes.
"""

from __future__ import annotations

import pytest

from apitask_auth.http.browser_url import parse_browser_url

WHATWG = [
    ("https://evil.com\\@app.example.com/", "https://evil.com/@app.example.com/"),
    ("https:evil.com", "https://evil.com/"),
    ("https:/\\evil.com/x", "https://evil.com/x"),
    ("\thttps://app.example.com/\r\nx", "https://app.example.com/x"),
    ("https://app.example.com@evil.com", "https://app.example.com@evil.com/"),
    ("https://APP.EXAMPLE.COM:443/a/../b?x=1 2#f`", "https://app.example.com/b?x=1%202#f%60"),
    ("https://\uff21\uff30\uff30.example.com", "https://app.example.com/"),
    ("https://\u0430pp.example.com/", "https://xn--pp-6kc.example.com/"),
    ("http://2130706433/", "http://127.0.0.1/"),
    ("http://0x7f.1/", "http://127.0.0.1/"),
    ("http://127.1:3000", "http://127.0.0.1:3000/"),
    ("https://evil%2Ecom/", "https://evil.com/"),
    ("https://app.example.com%40evil.com/", None),
    ("https://[::1]:8080/x", "https://[::1]:8080/x"),
    ("https://evil.com%2F%2Fapp.example.com", None),
    ("https://app.example.com/%2e%2e/x", "https://app.example.com/x"),
    ("https://app.example.com:99999/", None),
    ("https://user:pa ss@h.com/", "https://user:pa%20ss@h.com/"),
    ("HTTPS://app.example.com/A?Q='x'#F'", "https://app.example.com/A?Q=%27x%27#F'"),
    (
        'https://app.example.com/a b/<c>/"d"/{e}/`f`/\u00fc?\u00fc=\u00fc#\u00fc',
        "https://app.example.com/a%20b/%3Cc%3E/%22d%22/%7Be%7D/%60f%60/%C3%BC?%C3%BC=%C3%BC#%C3%BC",
    ),
    ("https://app.example.com./", "https://app.example.com./"),
    ("https://app..example.com/", "https://app..example.com/"),
    ("https://0177.0.0.1/", "https://127.0.0.1/"),
    ("https://09.0.0.1/", None),
    ("https://1.2.3.4.5/", None),
    ("https://1.2.3.256/", None),
    ("https://1.2.65536/", None),
    ("https://1.2.65535/", "https://1.2.255.255/"),
    ("https://[::ffff:1.2.3.4]/", "https://[::ffff:102:304]/"),
    ("https://[0:0:0:0:0:0:0:1]/", "https://[::1]/"),
    ("https://a_b.example.com/", "https://a_b.example.com/"),
    ("https://app.example.com:/x", "https://app.example.com/x"),
    ("https://app.example.com:0443/", "https://app.example.com/"),
    ("http://app.example.com:80/", "http://app.example.com/"),
    ("https://app.example.com/./a/./", "https://app.example.com/a/"),
    ("https://app.example.com/a/..", "https://app.example.com/"),
    ("https://app.example.com/a/%2E./b", "https://app.example.com/b"),
    ("https://app.example.com\\x\\y?a\\b#c\\d", "https://app.example.com/x/y?a\\b#c\\d"),
    ("https://app.example.com/?a=%zz", "https://app.example.com/?a=%zz"),
    ("https://evil.com#@app.example.com", "https://evil.com/#@app.example.com"),
    ("https://evil.com?@app.example.com", "https://evil.com/?@app.example.com"),
    ("https://@app.example.com/", "https://app.example.com/"),
    ("https://:@app.example.com/", "https://app.example.com/"),
    ("ftp://app.example.com:21/x", "ftp://app.example.com/x"),
    ("wss://a.example:443/", "wss://a.example/"),
    (" https://app.example.com/ ", "https://app.example.com/"),
    ("https://app.example.com/\u0000x", "https://app.example.com/%00x"),
    ("https://xn--bcher-kva.example/", "https://xn--bcher-kva.example/"),
    ("https://b\u00fccher.example/", "https://xn--bcher-kva.example/"),
    ("https://0x/", "https://0.0.0.0/"),
    ("https://0x100000000/", None),
    ("https://4294967295/", "https://255.255.255.255/"),
    ("https://4294967296/", None),
    ("https://app.example.com:65535/", "https://app.example.com:65535/"),
    ("https://:@app.example.com/", "https://app.example.com/"),
    ("https://u:@a.example/", "https://u@a.example/"),
    ("https://:p@a.example/", "https://:p@a.example/"),
    ("https://u@a.example/", "https://u@a.example/"),
    ("https://u:p:q@a.example/", "https://u:p%3Aq@a.example/"),
    ("https://a@b@c.example/", "https://a%40b@c.example/"),
    ("https://a%40b@c.example/", "https://a%40b@c.example/"),
    ("https://evil.com\\\\@app.example.com", "https://evil.com//@app.example.com"),
    ("https://evil.com/\\@app.example.com", "https://evil.com//@app.example.com"),
    ("https:\\\\evil.com", "https://evil.com/"),
    ("https:///evil.com", "https://evil.com/"),
    ("https:////\\\\evil.com/x", "https://evil.com/x"),
    ("http:evil.com:8080/x", "http://evil.com:8080/x"),
    ("https://app.example.com\t.evil.com/", "https://app.example.com.evil.com/"),
    ("https://app.exa\nmple.com/", "https://app.example.com/"),
    ("https://app.example.com\r\n.evil.com", "https://app.example.com.evil.com/"),
    ("\u0001https://app.example.com\u001f", "https://app.example.com/"),
    ("https://app.example.com/x\r\nBcc: a@b", "https://app.example.com/xBcc:%20a@b"),
    ("https://%61pp.example.com/", "https://app.example.com/"),
    ("https://app%2eexample%2ecom/", "https://app.example.com/"),
    ("https://app.example.com%2f.evil.com/", None),
    ("https://app.example.com%5c.evil.com/", None),
    ("https://app.example.com%3a443/", None),
    ("https://%ff.example/", None),
    ("https://app.example.com%00.evil.com/", None),
    ("https://0x7f000001/", "https://127.0.0.1/"),
    ("https://0x7F.0.0.1/", "https://127.0.0.1/"),
    ("https://017700000001/", "https://127.0.0.1/"),
    ("https://127.0.0.1./", "https://127.0.0.1/"),
    ("https://127.0.0.1.../", "https://127.0.0.1.../"),
    ("https://\uff25\uff36\uff29\uff2c.\uff43\uff4f\uff4d/", "https://evil.com/"),
    ("https://app\u3002example\u3002com/", "https://app.example.com/"),
    ("https://APP.Example.COM/", "https://app.example.com/"),
    ("https://xn--pp-6kc.example.com/", "https://xn--pp-6kc.example.com/"),
    ("HtTpS://app.example.com", "https://app.example.com/"),
    ("javascript:alert(1)", "javascript:alert(1)"),
    ("data:text/html,x", "data:text/html,x"),
    ("MyApp://Callback/X", "myapp://Callback/X"),
    ("com.my_cool_app.example://callback", None),
    ("https://[::1/", None),
    ("https://[::1]x/", None),
    ("https://[zz]/", None),
    ("https:", None),
    ("https://", None),
    ("https:///", None),
    ("https://?x", None),
    ("https://#x", None),
    ("https://a.example:x/", None),
    ("https://1.a.3.4/", None),
    ("https://1..2/", None),
    ("https://app.example.com/a/.", "https://app.example.com/a/"),
    ("https://\u0300a.com/", None),
    ("https://a\u200bb.com/", "https://ab.com/"),
    ("https://xn--zz.example/", None),
    ("https://%ff.example/", None),
    ("https://a.example.org\\[/callback", "https://a.example.org/[/callback"),
    ("https://0x.0x.0/", "https://0.0.0.0/"),
]


@pytest.mark.parametrize(("url", "href"), WHATWG)
def test_the_url_a_browser_goes_to(url: str, href: str | None) -> None:
    parsed = parse_browser_url(url)
    assert (parsed.href if parsed else None) == href


@pytest.mark.parametrize(
    ("url", "host", "port", "userinfo", "dotted"),
    [
        ("https://evil.com\\@app.example.com/", "evil.com", None, False, False),
        ("https://app.example.com@evil.com", "evil.com", None, True, False),
        ("https://@evil.com", "evil.com", None, True, False),
        ("http://127.0.0.1:3000/", "127.0.0.1", 3000, False, True),
        ("http://127.1/", "127.0.0.1", None, False, False),
        ("https://[::1]:443/", "[::1]", None, False, False),
    ],
)
def test_parts(url: str, host: str, port: int | None, userinfo: bool, dotted: bool) -> None:
    parsed = parse_browser_url(url)
    assert parsed is not None
    assert (parsed.host, parsed.port, parsed.userinfo, parsed.ipv4_written_as_dotted) == (
        host,
        port,
        userinfo,
        dotted,
    )


def test_file_urls_are_not_redirects() -> None:
    assert parse_browser_url("file:///etc/passwd") is None
