//! Turns the nginx build facts exported by `nginx-sys` into `cfg`s, as nginx-acme does,
//! so code can depend on the nginx version or features it is compiled against.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(ngx_feature, values(any()))");
    println!("cargo::rustc-check-cfg=cfg(ngx_os, values(any()))");
    if let Ok(features) = std::env::var("DEP_NGINX_FEATURES") {
        for f in features.split(',').filter(|f| !f.is_empty()) {
            println!("cargo::rustc-cfg=ngx_feature=\"{f}\"");
        }
    }
    if let Ok(os) = std::env::var("DEP_NGINX_OS") {
        println!("cargo::rustc-cfg=ngx_os=\"{os}\"");
    }
    let version = std::env::var("DEP_NGINX_VERSION_NUMBER")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    // nginx 1.27.3 added `server name resolve` to open-source upstreams with a `zone`: peers
    // added at run time (`ngx_http_upstream_rr_peer_t.host`, the list's `config` counter).
    println!("cargo::rustc-check-cfg=cfg(ngx_upstream_resolve)");
    let zone = std::env::var("DEP_NGINX_FEATURES")
        .is_ok_and(|f| f.split(',').any(|f| f == "http_upstream_zone"));
    if zone && version.is_some_and(|v| v >= 1_027_003) {
        println!("cargo::rustc-cfg=ngx_upstream_resolve");
    }
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_OS");
}
