//! The HTML dashboard: one self-contained page (`page.html`: inline CSS and JavaScript, no
//! external asset) that fetches the JSON of the same location (`?format=json`, with the
//! page's `upstream` and `state` arguments) and draws it, then again every `refresh` seconds.
//!
//! The server puts no data in the page: every name reaches the DOM through `textContent` in
//! the browser, never as markup. The only value substituted here is the refresh period, a
//! number.

const PAGE: &str = include_str!("page.html");

/// `Content-Security-Policy` of the page: inline script and style only, requests to the
/// page's own origin only (the JSON).
pub const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The page, updating itself every `refresh` seconds (0: never).
pub fn html(refresh: u32) -> Vec<u8> {
    PAGE.replacen("{{REFRESH}}", &refresh.to_string(), 1)
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_is_a_number() {
        let p = String::from_utf8(html(7)).unwrap();
        assert!(p.contains("var REFRESH = 7;"));
        assert!(!p.contains("{{"));
        assert!(String::from_utf8(html(0))
            .unwrap()
            .contains("var REFRESH = 0;"));
    }

    #[test]
    fn self_contained() {
        let p = PAGE.to_ascii_lowercase();
        for external in [
            "http://", "https://", "//cdn", "src=", "<link", "@import", "url(",
        ] {
            assert!(!p.contains(external), "external reference: {external}");
        }
    }

    #[test]
    fn data_only_as_text() {
        for markup in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!PAGE.contains(markup), "{markup}");
        }
        assert!(PAGE.contains("textContent"));
    }
}
