// mltrail's UI works without this file; it only adds conveniences.
(function () {
  // The mlflow client prints links into MLflow's single-page app (`/#/experiments/1/runs/<id>`,
  // `/#/models/<name>/versions/<v>`): land them on the matching page.
  var hash = window.location.hash;
  if (window.location.pathname === "/" && hash.indexOf("#/") === 0) {
    var parts = hash.slice(2).split("?")[0].split("/").map(decodeURIComponent);
    var to = null;
    if (parts[0] === "experiments" && parts[2] === "runs" && parts[3]) {
      to = "/ui/runs/" + encodeURIComponent(parts[3]);
    } else if (parts[0] === "experiments" && parts[1]) {
      to = "/ui/experiments/" + encodeURIComponent(parts[1]);
    } else if (parts[0] === "models" && parts[1] && parts[2] === "versions" && parts[3]) {
      to = "/ui/models/" + encodeURIComponent(parts[1]) + "/versions/" + encodeURIComponent(parts[3]);
    } else if (parts[0] === "models" && parts[1]) {
      to = "/ui/models/" + encodeURIComponent(parts[1]);
    } else if (parts[0] === "models") {
      to = "/ui/models";
    }
    if (to) { window.location.replace(to); }
  }
  document.addEventListener("DOMContentLoaded", function () {
    // Live panels: reload the page every few seconds while it is shown.
    var live = document.querySelector("[data-refresh]");
    if (live) {
      var seconds = parseInt(live.getAttribute("data-refresh"), 10) || 10;
      setTimeout(function () { if (!document.hidden) { window.location.reload(); } }, seconds * 1000);
    }
    // "Select all" for the runs table's checkboxes.
    var all = document.getElementById("select-all");
    if (all) {
      all.addEventListener("change", function () {
        document.querySelectorAll("input[name=run]").forEach(function (box) { box.checked = all.checked; });
      });
    }
  });
})();
