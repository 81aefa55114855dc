//! The pages and their files, built into the binary.

pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! assets {
    ($(($name:literal, $ct:literal)),* $(,)?) => {
        pub const ASSETS: &[Asset] = &[$(Asset { name: $name, content_type: $ct, body: include_bytes!(concat!("../../static/", $name)) }),*];
    };
}

assets!(
    ("index.html", "text/html; charset=utf-8"),
    ("notices.html", "text/html; charset=utf-8"),
    ("register.html", "text/html; charset=utf-8"),
    ("app.html", "text/html; charset=utf-8"),
    ("demo.html", "text/html; charset=utf-8"),
    ("admin.html", "text/html; charset=utf-8"),
    ("common.css", "text/css; charset=utf-8"),
    ("app.css", "text/css; charset=utf-8"),
    ("i18n.js", "text/javascript; charset=utf-8"),
    ("notices.js", "text/javascript; charset=utf-8"),
    ("register.js", "text/javascript; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("device.js", "text/javascript; charset=utf-8"),
    ("sw.js", "text/javascript; charset=utf-8"),
    ("app.webmanifest", "application/manifest+json"),
    ("icon-192.png", "image/png"),
    ("icon-512.png", "image/png"),
    ("demo.js", "text/javascript; charset=utf-8"),
    ("admin.js", "text/javascript; charset=utf-8"),
    ("openapi.json", "application/json"),
);

/// Page paths and the file each serves. `/demo` only with `serve --demo`.
/// The service worker is served from the root, not /static/, so that its
/// scope may cover /app (a worker's scope cannot reach above its own path).
pub const PAGES: &[(&str, &str)] = &[
    ("", "index.html"),
    ("notices", "notices.html"),
    ("register", "register.html"),
    ("app", "app.html"),
    ("admin", "admin.html"),
    ("demo", "demo.html"),
    ("sw.js", "sw.js"),
    ("favicon.ico", "icon-192.png"),
];

pub fn get(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The file a page path serves.
pub fn page(path: &str) -> Option<&'static Asset> {
    PAGES.iter().find(|(p, _)| *p == path).and_then(|(_, file)| get(file))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_page_has_its_file_and_no_inline_script() {
        for (_, file) in super::PAGES.iter().filter(|(_, f)| f.ends_with(".html")) {
            let a = super::get(file).unwrap_or_else(|| panic!("{file} is not embedded"));
            let html = std::str::from_utf8(a.body).unwrap();
            // CSP forbids inline scripts and styles: every <script> has a src.
            for tag in html.split("<script").skip(1) {
                assert!(tag.trim_start().starts_with("src="), "{file} has an inline script");
            }
            assert!(!html.contains(" style="), "{file} has an inline style");
            assert!(!html.contains(" onclick="), "{file} has an inline handler");
        }
    }
}
