/* Links that work inside Airflow's navigation.
 *
 * Airflow shows an external view in an iframe sandboxed with "allow-scripts
 * allow-same-origin allow-forms": no top-level navigation and no popups, so a
 * target="_top" or target="_blank" link does nothing there. The frame is same-origin
 * with Airflow's UI, though, and that UI is a single-page app whose router follows
 * the browser history: pushing the run's URL onto the top window's history and
 * announcing it with a popstate event is exactly what its own links do, and it is
 * not a navigation the sandbox forbids.
 *
 * Links marked data-airflow (pages of Airflow's UI) go there; every other link
 * (a report, the audit page) opens in this frame. Opened directly at /mlinfra/...
 * (no frame), the links are plain links.
 */
(function () {
  "use strict";

  function airflowWindow() {
    try {
      if (window.top === window) return null;
      // Throws when the top window is not same-origin (embedded elsewhere): then plain links.
      void window.top.location.pathname;
      return window.top;
    } catch (e) {
      return null;
    }
  }

  function openInAirflow(url) {
    var top = airflowWindow();
    if (!top) {
      window.location.assign(url);
      return;
    }
    var state = top.history.state || {};
    var idx = typeof state.idx === "number" ? state.idx + 1 : 0;
    top.history.pushState({ usr: null, key: Math.random().toString(36).slice(2, 10), idx: idx }, "", url);
    top.dispatchEvent(new PopStateEvent("popstate", { state: top.history.state }));
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-airflow]");
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return; // the browser's own "open in new tab"
    event.preventDefault();
    openInAirflow(link.getAttribute("href"));
  });

  window.mlinfra = { openInAirflow: openInAirflow, framed: function () { return airflowWindow() !== null; } };
})();

/* The fleet page's prefilled trigger forms: post the conf to Airflow's REST API with this
 * browser's Airflow session, show Airflow's answer, and open the new run on success. */
(function () {
  "use strict";

  function conf(form) {
    var out = {};
    Array.prototype.forEach.call(form.querySelectorAll("input[name]"), function (input) {
      var type = input.getAttribute("data-type");
      if (type === "boolean") {
        out[input.name] = input.checked;
      } else if (type === "integer") {
        if (input.value === "" && input.getAttribute("data-optional")) return; // the DAG's default
        // Sent as typed when it is not a whole number: the server names the problem.
        out[input.name] = /^-?\d+$/.test(input.value) ? parseInt(input.value, 10) : input.value;
      } else {
        out[input.name] = input.value;
      }
    });
    return out;
  }

  function detail(body) {
    if (!body) return "";
    if (typeof body.detail === "string") return body.detail;
    return JSON.stringify(body.detail || body);
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("#trigger-form")) return;
    event.preventDefault();
    var status = document.getElementById("trigger-status");
    var base = form.getAttribute("data-airflow-base") || "";
    var dag = form.getAttribute("data-dag");
    status.textContent = "triggering...";
    status.className = "";
    fetch(base + "/api/v2/dags/" + encodeURIComponent(dag) + "/dagRuns", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ logical_date: null, conf: conf(form) }),
    })
      .then(function (response) {
        return response.json().then(
          function (body) { return { ok: response.ok, status: response.status, body: body }; },
          function () { return { ok: response.ok, status: response.status, body: null }; }
        );
      })
      .then(function (r) {
        if (!r.ok) {
          status.textContent = "Airflow refused it (" + r.status + "): " + detail(r.body);
          status.className = "error";
          return;
        }
        var url = base + "/dags/" + encodeURIComponent(dag) + "/runs/" + encodeURIComponent(r.body.dag_run_id);
        status.textContent = "run " + r.body.dag_run_id + " created";
        window.mlinfra.openInAirflow(url);
      })
      .catch(function (e) {
        status.textContent = "cannot reach Airflow: " + e;
        status.className = "error";
      });
  });
})();
