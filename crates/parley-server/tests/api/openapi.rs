//! The OpenAPI document matches the routes (the API's and the widget's), and every route
//! requires its credentials.

use std::collections::BTreeSet;

use parley_server::api::{OPENAPI_JSON, ROUTES};

use crate::helpers::TestApp;

#[test]
fn the_document_describes_exactly_the_routes() {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "patch", "put", "delete"] {
            if let Some(op) = item.get(method) {
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} documents its responses"
                );
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .chain(parley_server::widget::ROUTES)
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, routed);
    // Every $ref resolves.
    let text = OPENAPI_JSON;
    for piece in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
        let name = &piece[..piece.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "missing schema {name}"
        );
    }
}

#[tokio::test]
async fn every_api_route_exists_and_refuses_requests_without_a_key() {
    let app = TestApp::spawn().await;
    let served = app.send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.body["openapi"], "3.1.0");
    for (method, path) in ROUTES {
        let path = path.replace("{id}", "0190f8a8-0000-7000-8000-000000000000");
        let req = app.client.request(method.parse().unwrap(), app.url(&path));
        let r = app
            .send(req.header("content-type", "application/json").body("{}"))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (401, "unauthorized"),
            "{method} {path} without a key: {}",
            r.text
        );
    }
    // The widget's public routes exist and want a widget key.
    for (method, path) in parley_server::widget::ROUTES {
        let req = app.client.request(method.parse().unwrap(), app.url(path));
        let r = app
            .send(req.header("content-type", "application/json").body("{}"))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (401, "unknown_widget_key"),
            "{method} {path} without a key: {}",
            r.text
        );
        let widget_op = &serde_json::from_str::<serde_json::Value>(OPENAPI_JSON).unwrap()["paths"]
            [*path][method.to_lowercase()];
        assert_eq!(
            widget_op["security"],
            serde_json::json!([{"widgetKey": []}])
        );
    }
    for open in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(
            app.send(app.client.get(app.url(open))).await.status,
            200,
            "{open}"
        );
    }
}
