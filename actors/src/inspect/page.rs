//! The status page: one HTML file, its stylesheet and its script, built into the binary, with
//! nothing fetched from elsewhere, so it works offline. The script draws the charts (inline
//! SVG) and the table from `/v1/queue` and `/v1/history`, and refreshes them every two seconds.

/// A file of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// Its content.
    pub body: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_str!("page/index.html"),
    content_type: "text/html; charset=utf-8",
};

const STYLE: Asset = Asset {
    body: include_str!("page/status.css"),
    content_type: "text/css; charset=utf-8",
};

const SCRIPT: Asset = Asset {
    body: include_str!("page/status.js"),
    content_type: "text/javascript; charset=utf-8",
};

/// The file served at `path`, if it is one of the page's.
pub fn asset(path: &str) -> Option<Asset> {
    match path {
        "/" | "/index.html" => Some(INDEX),
        "/status.css" => Some(STYLE),
        "/status.js" => Some(SCRIPT),
        _ => None,
    }
}
