//! The dashboard's files, embedded in the binary so `covid-etl serve` and the Lambda need
//! nothing beside them and the page works offline.
//!
//! `web/vendor/` holds uPlot's minified build, copied from `node_modules/uplot` by
//! `scripts/vendor-web.sh` at the version pinned in `package.json` (recorded in
//! `web/vendor/VERSION`): committed, so a fresh clone builds with plain `cargo build`.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page only talks to its own origin; uPlot sizes its elements with inline styles.
const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The HTML is revalidated on every load; the other files are not fingerprinted, so they
/// are cached for an hour only.
const HTML_CACHE: &str = "no-cache";
const ASSET_CACHE: &str = "public, max-age=3600";

struct Asset {
    path: &'static str,
    content_type: &'static str,
    cache: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        cache: HTML_CACHE,
        body: include_str!("../../web/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        cache: ASSET_CACHE,
        body: include_str!("../../web/app.js"),
    },
    Asset {
        path: "/app.css",
        content_type: "text/css; charset=utf-8",
        cache: ASSET_CACHE,
        body: include_str!("../../web/app.css"),
    },
    Asset {
        path: "/vendor/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        cache: ASSET_CACHE,
        body: include_str!("../../web/vendor/uPlot.iife.min.js"),
    },
    Asset {
        path: "/vendor/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        cache: ASSET_CACHE,
        body: include_str!("../../web/vendor/uPlot.min.css"),
    },
    Asset {
        path: "/vendor/uPlot.LICENSE",
        content_type: "text/plain; charset=utf-8",
        cache: ASSET_CACHE,
        body: include_str!("../../web/vendor/uPlot.LICENSE"),
    },
    Asset {
        path: "/api/openapi.yaml",
        content_type: "application/yaml; charset=utf-8",
        cache: ASSET_CACHE,
        body: include_str!("../../docs/openapi.yaml"),
    },
];

fn respond(asset: &'static Asset) -> Response {
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(asset.cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.content_type.starts_with("text/html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    response
}

pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(asset.path, get(move || async move { respond(asset) }))
    })
}
