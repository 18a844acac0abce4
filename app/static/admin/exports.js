// « Mes exports »: while an export is being prepared, ask its status every 1.5 s and update
// its row in place (state, progress bar, download link). Without JavaScript the page offers a
// plain « Actualiser la page » link instead.
(function () {
  "use strict";
  var INTERVAL = 1500;

  function setText(row, role, text) {
    var element = row.querySelector('[data-role="' + role + '"]');
    if (element && element.textContent !== text) { element.textContent = text; }
  }

  function update(row, data) {
    setText(row, "state", data.state_label);
    setText(row, "progress-text", data.progress_text);
    setText(row, "error", data.error || "");
    var progress = row.querySelector('[data-role="progress"]');
    if (progress) {
      if (data.rows_total === null) {
        progress.removeAttribute("value");
      } else {
        progress.max = data.rows_total || 1;
        progress.value = data.rows_total ? data.rows_done : 1;
      }
      progress.textContent = data.percent + " %";
      if (data.state === "failed" || data.state === "expired") { progress.hidden = true; }
    }
    var cell = row.querySelector('[data-role="download"]');
    if (!data.pending && cell) {
      cell.textContent = "";
      if (data.download_url) {
        var link = document.createElement("a");
        link.className = "btn btn-sm btn-primary pde-btn";
        link.href = data.download_url;
        link.setAttribute("download", "");
        link.textContent = "Télécharger (" + data.filename + ")";
        cell.appendChild(link);
      } else {
        cell.textContent = data.state === "expired" ? "Supprimé" : "—";
      }
    }
  }

  function pendingRows() {
    return Array.prototype.slice.call(document.querySelectorAll('tr[data-export-pending="true"]'));
  }

  function poll() {
    var rows = pendingRows();
    if (!rows.length) {
      var notice = document.getElementById("exports-refresh");
      if (notice) { notice.hidden = true; }
      return;
    }
    Promise.all(rows.map(function (row) {
      return fetch(row.getAttribute("data-export-status"), {credentials: "same-origin", cache: "no-store"})
        .then(function (response) {
          if (response.status === 404) {
            // Purged meanwhile: nothing left to wait for.
            return {state: "expired", state_label: "Supprimé", progress_text: "", pending: false, percent: 0, rows_total: null};
          }
          return response.ok ? response.json() : null;
        })
        .then(function (data) {
          if (!data) { return; }
          update(row, data);
          if (!data.pending) { row.setAttribute("data-export-pending", "false"); }
        })
        .catch(function () {});
    })).then(function () { window.setTimeout(poll, INTERVAL); });
  }

  if (pendingRows().length) { window.setTimeout(poll, INTERVAL); }
})();
