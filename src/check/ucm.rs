//! The `check_status` page in nginx_upstream_check_module's three formats (html, csv, json),
//! with its field names and its query arguments (`format=`, `status=up|down`), so that
//! scrapers written for UCM keep working. Pure: rows in, bytes out.

use serde::Serialize;

use super::conf::Format;

/// One checked peer, as UCM lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub upstream: String,
    /// The peer's address.
    pub name: String,
    /// Takes traffic; "down" covers unhealthy peers and peers not yet checked under
    /// `default_down=true`.
    pub up: bool,
    /// Consecutive passed checks.
    pub rise: u32,
    /// Consecutive failed checks.
    pub fall: u32,
    pub kind: &'static str,
    /// `port=` of the check, 0 when the peer's own port is checked.
    pub port: u16,
}

/// What the query string asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub format: Option<Format>,
    /// Only peers up (Some(true)) or down (Some(false)).
    pub status: Option<bool>,
}

/// `format=json&status=down` (unknown arguments and values are ignored, as UCM does).
pub fn parse_query(args: &[u8]) -> Query {
    let mut q = Query::default();
    for kv in args.split(|&b| b == b'&') {
        let (k, v) = match kv.iter().position(|&b| b == b'=') {
            Some(i) => (&kv[..i], &kv[i + 1..]),
            None => continue,
        };
        match k {
            b"format" => q.format = Format::parse(v).or(q.format),
            b"status" if v.eq_ignore_ascii_case(b"up") => q.status = Some(true),
            b"status" if v.eq_ignore_ascii_case(b"down") => q.status = Some(false),
            _ => {}
        }
    }
    q
}

fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}

#[derive(Serialize)]
struct JsonServer<'a> {
    index: usize,
    upstream: &'a str,
    name: &'a str,
    status: &'static str,
    rise: u32,
    fall: u32,
    #[serde(rename = "type")]
    kind: &'a str,
    port: u16,
}

#[derive(Serialize)]
struct JsonServers<'a> {
    total: usize,
    generation: u64,
    server: Vec<JsonServer<'a>>,
}

#[derive(Serialize)]
struct JsonDoc<'a> {
    servers: JsonServers<'a>,
}

fn status(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

/// The page. `generation` counts configuration loads; rows keep their index when filtered.
pub fn render(format: Format, rows: &[Row], generation: u64, only: Option<bool>) -> String {
    let shown: Vec<(usize, &Row)> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| only.is_none_or(|up| r.up == up))
        .collect();
    match format {
        Format::Csv => shown
            .iter()
            .map(|(i, r)| {
                format!(
                    "{i},{},{},{},{},{},{},{}\n",
                    r.upstream,
                    r.name,
                    status(r.up),
                    r.rise,
                    r.fall,
                    r.kind,
                    r.port
                )
            })
            .collect(),
        Format::Json => {
            let doc = JsonDoc {
                servers: JsonServers {
                    total: shown.len(),
                    generation,
                    server: shown
                        .iter()
                        .map(|&(index, r)| JsonServer {
                            index,
                            upstream: &r.upstream,
                            name: &r.name,
                            status: status(r.up),
                            rise: r.rise,
                            fall: r.fall,
                            kind: r.kind,
                            port: r.port,
                        })
                        .collect(),
                },
            };
            // Serializing plain data into a String cannot fail.
            serde_json::to_string(&doc).unwrap_or_default()
        }
        Format::Html => {
            let mut o = format!(
                "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\"\n\
                 \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">\n\
                 <html xmlns=\"http://www.w3.org/1999/xhtml\">\n<head>\n\
                 \x20 <title>Nginx http upstream check status</title>\n</head>\n<body>\n\
                 <h1>Nginx http upstream check status</h1>\n\
                 <h2>Check upstream server number: {}, generation: {generation}</h2>\n\
                 <table style=\"background-color:white\" cellspacing=\"0\" cellpadding=\"3\" border=\"1\">\n\
                 \x20 <tr bgcolor=\"#C0C0C0\">\n\
                 \x20   <th>Index</th>\n    <th>Upstream</th>\n    <th>Name</th>\n\
                 \x20   <th>Status</th>\n    <th>Rise counts</th>\n    <th>Fall counts</th>\n\
                 \x20   <th>Check type</th>\n    <th>Check port</th>\n  </tr>\n",
                shown.len()
            );
            for (i, r) in &shown {
                o.push_str(&format!(
                    "  <tr{}>\n    <td>{i}</td>\n    <td>{}</td>\n    <td>{}</td>\n    <td>{}</td>\n    \
                     <td>{}</td>\n    <td>{}</td>\n    <td>{}</td>\n    <td>{}</td>\n  </tr>\n",
                    if r.up { "" } else { " bgcolor=\"#FF0000\"" },
                    html_escape(&r.upstream),
                    html_escape(&r.name),
                    status(r.up),
                    r.rise,
                    r.fall,
                    r.kind,
                    r.port
                ));
            }
            o.push_str("</table>\n</body>\n</html>\n");
            o
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        vec![
            Row {
                upstream: "backend".into(),
                name: "127.0.0.1:8080".into(),
                up: true,
                rise: 4,
                fall: 0,
                kind: "http",
                port: 0,
            },
            Row {
                upstream: "backend".into(),
                name: "127.0.0.1:8081".into(),
                up: false,
                rise: 0,
                fall: 7,
                kind: "http",
                port: 0,
            },
        ]
    }

    #[test]
    fn csv_as_ucm() {
        assert_eq!(
            render(Format::Csv, &rows(), 3, None),
            "0,backend,127.0.0.1:8080,up,4,0,http,0\n1,backend,127.0.0.1:8081,down,0,7,http,0\n"
        );
        assert_eq!(
            render(Format::Csv, &rows(), 3, Some(false)),
            "1,backend,127.0.0.1:8081,down,0,7,http,0\n",
            "filtered rows keep their index"
        );
    }

    #[test]
    fn json_as_ucm() {
        let v: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &rows(), 3, None)).unwrap();
        let s = &v["servers"];
        assert_eq!(s["total"], 2);
        assert_eq!(s["generation"], 3);
        let p = &s["server"][1];
        assert_eq!(p["index"], 1);
        assert_eq!(p["upstream"], "backend");
        assert_eq!(p["name"], "127.0.0.1:8081");
        assert_eq!(p["status"], "down");
        assert_eq!((p["rise"].as_u64(), p["fall"].as_u64()), (Some(0), Some(7)));
        assert_eq!(p["type"], "http");
        assert_eq!(p["port"], 0);
        let v: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &rows(), 3, Some(true))).unwrap();
        assert_eq!(v["servers"]["total"], 1);
    }

    #[test]
    fn html_as_ucm() {
        let h = render(Format::Html, &rows(), 3, None);
        assert!(h.contains("<h2>Check upstream server number: 2, generation: 3</h2>"));
        assert!(h.contains("<th>Rise counts</th>"));
        assert!(h.contains("  <tr bgcolor=\"#FF0000\">\n    <td>1</td>\n    <td>backend</td>\n    <td>127.0.0.1:8081</td>\n    <td>down</td>"));
        let mut r = rows();
        r[0].upstream = "<b>".into();
        assert!(render(Format::Html, &r, 1, None).contains("<td>&lt;b&gt;</td>"));
    }

    #[test]
    fn query() {
        assert_eq!(parse_query(b""), Query::default());
        assert_eq!(
            parse_query(b"format=json&status=down"),
            Query {
                format: Some(Format::Json),
                status: Some(false)
            }
        );
        assert_eq!(parse_query(b"status=UP&format=xml&x").status, Some(true));
        assert_eq!(parse_query(b"format=xml").format, None);
    }
}
