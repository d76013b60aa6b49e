//! A stored prediction's trace, looked up by id.

use super::*;

/// `/ui/predictions?id=…`: the guard asked for `predictions:read` (inputs may be personal data).
pub(super) async fn prediction(
    State(state): State<AppState>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let q = pairs(&raw);
    let id = first(&q, "id").trim().to_string();
    let deployment = first(&q, "deployment");
    if id.is_empty() {
        return html(mltrail_web::predictions::prediction_page(
            &ctx.viewer(),
            "",
            None,
        ));
    }
    let deployment = (!deployment.is_empty()).then_some(deployment.as_str());
    let trace = crate::lineage::trace(&state, &id, deployment).await;
    let (status, found) = match &trace {
        Ok(trace) => (StatusCode::OK, Ok(trace)),
        Err(e) => (e.status, Err(e.message.clone())),
    };
    let page = mltrail_web::predictions::prediction_page(&ctx.viewer(), &id, Some(found));
    // A lookup that finds nothing answers with the API's status, on the same page.
    if status == StatusCode::OK {
        html(page)
    } else {
        Err(Shown {
            section: Section::Predictions,
            viewer: ctx.viewer.clone(),
            csrf: ctx.csrf.clone(),
            problem: Problem::Rendered(status, page.into_string()),
        })
    }
}
