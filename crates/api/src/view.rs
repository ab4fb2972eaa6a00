//! JSON renderings of services for API responses, shaped like Docker Flow Proxy's so that
//! tools reading DFP's responses keep working. Passwords are never included.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use sluice_core::service::{Destination, HeaderOp, HeaderValue, Service, ValuePart};

/// A JSON response (`Content-Type: application/json`); keys keep the order they were inserted
/// in (serde_json's `preserve_order`), as DFP's clients see them.
pub fn json_response(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// DFP's response envelope: `Status`, `Message`, `ServiceName`, then the service's fields.
pub fn envelope(
    status: &str,
    message: &str,
    service_name: &str,
    service: Option<&Service>,
) -> Value {
    let mut map = Map::new();
    map.insert("Status".into(), json!(status));
    map.insert("Message".into(), json!(message));
    map.insert("ServiceName".into(), json!(service_name));
    if let Some(service) = service {
        if let Value::Object(fields) = service_json(service) {
            for (k, v) in fields {
                map.entry(k).or_insert(v);
            }
        }
    }
    Value::Object(map)
}

/// One service as DFP's `config?type=json` shows it (without passwords).
pub fn service_json(s: &Service) -> Value {
    let (add_req, set_req, del_req) = split_ops(&s.request_headers);
    let (add_res, set_res, del_res) = split_ops(&s.response_headers);
    json!({
        "ServiceName": s.name,
        "AclName": s.acl_name,
        "AddReqHeader": add_req,
        "SetReqHeader": set_req,
        "DelReqHeader": del_req,
        "AddResHeader": add_res,
        "SetResHeader": set_res,
        "DelResHeader": del_res,
        "CompressionAlgo": s.compression.as_ref().map(|c| c.algos.iter().map(|a| format!("{a:?}").to_lowercase()).collect::<Vec<_>>().join(" ")).unwrap_or_default(),
        "CompressionType": s.compression.as_ref().map(|c| c.types.join(" ")).unwrap_or_default(),
        "ConnectionMode": s.connection_mode.map(|m| m.as_str()).unwrap_or(""),
        "Distribute": s.distribute,
        "IsDefaultBackend": s.is_default_backend,
        "ProxyInstanceName": s.proxy_instance_name.clone().unwrap_or_default(),
        "RedirectWhenHttpProto": s.redirect_when_http_proto,
        "RedirectUnlessHttpsProto": s.redirect_unless_https_proto,
        "Replicas": s.replicas.unwrap_or(0),
        "IsGlobal": s.replicas.is_none(),
        "ServiceCert": if s.service_cert.is_some() { "<set>" } else { "" },
        "SessionType": if s.sticky { "sticky-server" } else { "" },
        "Users": s.users.iter().map(|u| json!({"Username": u.name, "PassEncrypted": s.users_pass_encrypted})).collect::<Vec<_>>(),
        "UsersSecret": s.users_secret.clone().unwrap_or_default(),
        "ServiceDest": s.destinations.iter().map(dest_json).collect::<Vec<_>>(),
        "Warnings": s.warnings,
    })
}

fn dest_json(d: &Destination) -> Value {
    json!({
        "AllowedMethods": d.allowed_methods,
        "BalanceGroup": d.balance_group.map(|b| format!("{b:?}").to_lowercase()).unwrap_or_default(),
        "CheckTCP": d.check_tcp,
        "Clitcpka": d.clitcpka,
        "DeniedMethods": d.denied_methods,
        "DenyHttp": d.deny_http,
        "HttpsOnly": d.https_only,
        "HttpsPort": d.https_port.unwrap_or(0),
        "HttpsRedirectCode": d.https_redirect_code.get().to_string(),
        "IgnoreAuthorization": d.ignore_authorization,
        "OutboundHostname": d.outbound_hostname.clone().unwrap_or_default(),
        "PathType": d.path_type.as_str(),
        "Port": d.port.map(|p| p.to_string()).unwrap_or_default(),
        "RedirectFromDomain": d.redirect_from_domains.iter().map(|p| p.text()).collect::<Vec<_>>(),
        "ReqMode": d.req_mode.as_str(),
        "ReqPathSearchReplace": d.rewrites.iter().map(|r| r.source.clone()).collect::<Vec<_>>().join(":"),
        "ServiceDomain": d.domains.iter().map(|p| p.text()).collect::<Vec<_>>(),
        "ServiceGroup": d.service_group.clone().unwrap_or_default(),
        "ServiceHeader": d.service_headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>(),
        "ServicePath": d.paths.iter().map(|p| p.text().to_string()).collect::<Vec<_>>(),
        "ServicePathExclude": d.path_excludes.iter().map(|p| p.text().to_string()).collect::<Vec<_>>(),
        "SrcPort": d.src_port.unwrap_or(0),
        "SrcHttpsPort": d.src_https_port.unwrap_or(0),
        "SslVerifyNone": d.ssl_verify_none,
        "TimeoutServer": d.timeout_server.map(|t| t.to_string()).unwrap_or_default(),
        "TimeoutClient": d.timeout_client.map(|t| t.to_string()).unwrap_or_default(),
        "TimeoutTunnel": d.timeout_tunnel.map(|t| t.to_string()).unwrap_or_default(),
        "VerifyClientSsl": d.verify_client_ssl,
        "UserAgent": {"Value": d.user_agents},
        "Index": d.index,
    })
}

type Ops = (Vec<String>, Vec<String>, Vec<String>);

fn split_ops(ops: &[HeaderOp]) -> Ops {
    let mut out: Ops = (Vec::new(), Vec::new(), Vec::new());
    for op in ops {
        match op {
            HeaderOp::Add { name, value, .. } => {
                out.0.push(format!("{name} {}", value_text(value)))
            }
            HeaderOp::Set { name, value, .. } => {
                out.1.push(format!("{name} {}", value_text(value)))
            }
            HeaderOp::Del { name } => out.2.push(name.clone()),
        }
    }
    out
}

fn value_text(v: &HeaderValue) -> String {
    v.0.iter()
        .map(|p| match p {
            ValuePart::Text(t) => t.clone(),
            ValuePart::ClientIp => "%[src]".into(),
            ValuePart::LocalPort => "%[dst_port]".into(),
            ValuePart::Tls => "%[ssl_fc]".into(),
        })
        .collect()
}
