//! Paths: `pathType` and the `servicePath` / `servicePathExclude` patterns.

use super::value::Val;
use super::ParamError;
use crate::service::{PathPattern, PathType, ReqMode, SniMatch, SniPattern, UserRegex};

const PATH_TYPES_HELP: &str = "unsupported pathType (use path_beg, path, path_end, path_sub, \
     path_dir, path_reg or url_beg; with reqMode=sni use req_ssl_sni [-i] \
     [-m str|beg|end|sub|reg|dom])";

pub(super) fn parse_path_type(
    v: Option<Val<'_>>,
    req_mode: ReqMode,
) -> Result<PathType, ParamError> {
    let Some(v) = v else {
        return Ok(match req_mode {
            ReqMode::Sni => PathType::Sni(SniMatch::Exact),
            ReqMode::Http | ReqMode::Tcp => PathType::Beg,
        });
    };
    let lowered = v.value.trim().to_ascii_lowercase();
    let mut tokens = lowered.split_whitespace();
    let first = tokens.next().unwrap_or_default();
    let simple = match first {
        "path_beg" => Some(PathType::Beg),
        "path" => Some(PathType::Exact),
        "path_end" => Some(PathType::End),
        "path_sub" => Some(PathType::Sub),
        "path_dir" => Some(PathType::Dir),
        "path_reg" => Some(PathType::Reg),
        "url_beg" => Some(PathType::UrlBeg),
        "req_ssl_sni" | "req.ssl_sni" => None,
        _ => return Err(v.invalid(PATH_TYPES_HELP)),
    };
    let path_type = match simple {
        Some(t) => {
            if tokens.next().is_some() {
                return Err(v.invalid(PATH_TYPES_HELP));
            }
            t
        }
        None => {
            let mut method = None;
            while let Some(token) = tokens.next() {
                match token {
                    "-i" => {}
                    "-m" if method.is_none() => {
                        method = Some(match tokens.next() {
                            Some("str") => SniMatch::Exact,
                            Some("beg") => SniMatch::Prefix,
                            Some("end") => SniMatch::Suffix,
                            Some("sub") => SniMatch::Substring,
                            Some("reg") => SniMatch::Regex,
                            Some("dom") => SniMatch::Domain,
                            _ => return Err(v.invalid(PATH_TYPES_HELP)),
                        });
                    }
                    _ => return Err(v.invalid(PATH_TYPES_HELP)),
                }
            }
            PathType::Sni(method.unwrap_or(SniMatch::Exact))
        }
    };
    match (req_mode, path_type) {
        (ReqMode::Sni, PathType::Sni(_)) => Ok(path_type),
        (ReqMode::Sni, _) => Err(
            v.invalid("reqMode=sni needs pathType req_ssl_sni [-i] [-m str|beg|end|sub|reg|dom]")
        ),
        (_, PathType::Sni(_)) => Err(v.invalid("req_ssl_sni applies only to reqMode=sni")),
        _ => Ok(path_type),
    }
}

pub(super) fn compile_paths(
    v: Option<Val<'_>>,
    path_type: PathType,
    sep: &str,
) -> Result<Vec<PathPattern>, ParamError> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    v.items(sep)
        .map(|item| compile_path(item, path_type).map_err(|reason| v.invalid_item(item, reason)))
        .collect()
}

pub(super) fn compile_path(text: &str, path_type: PathType) -> Result<PathPattern, String> {
    let owned = || text.to_string();
    Ok(match path_type {
        PathType::Beg => PathPattern::Prefix(owned()),
        PathType::Exact => PathPattern::Exact(owned()),
        PathType::End => PathPattern::Suffix(owned()),
        PathType::Sub => PathPattern::Substring(owned()),
        PathType::Dir => PathPattern::Dir(owned()),
        PathType::Reg => PathPattern::Regex(UserRegex::new(text, false)?),
        PathType::UrlBeg => PathPattern::UrlPrefix(owned()),
        PathType::Sni(method) => {
            let lower = text.to_ascii_lowercase();
            PathPattern::Sni(match method {
                SniMatch::Exact => SniPattern::Exact(lower),
                SniMatch::Prefix => SniPattern::Prefix(lower),
                SniMatch::Suffix => SniPattern::Suffix(lower),
                SniMatch::Substring => SniPattern::Substring(lower),
                SniMatch::Domain => SniPattern::Domain(lower),
                SniMatch::Regex => SniPattern::Regex(UserRegex::new(text, true)?),
            })
        }
    })
}
