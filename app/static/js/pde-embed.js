/* On a partner's page: turn each <div data-pde-iframe="…/iframe/…"> into the Place des Entreprises
   frame, give it the page's address (kept as the request's provenance), and resize it to the
   height the frame announces. Only messages from this script's own origin and from the frame
   it made are read. */
(function () {
  "use strict";
  var script = document.currentScript;
  var origin = new URL(script.src).origin;
  var frames = [];
  document.querySelectorAll("[data-pde-iframe]").forEach(function (holder) {
    var url = new URL(holder.getAttribute("data-pde-iframe"), origin);
    if (url.origin !== origin) return;
    if (!url.searchParams.has("origin_url")) url.searchParams.set("origin_url", window.location.href);
    var frame = document.createElement("iframe");
    frame.src = url.toString();
    frame.title = holder.getAttribute("data-pde-title") || "Formulaire Place des Entreprises";
    frame.style.width = "100%";
    frame.style.border = "0";
    frame.style.minHeight = "400px";
    frame.setAttribute("loading", "lazy");
    holder.replaceChildren(frame);
    frames.push(frame);
  });
  window.addEventListener("message", function (event) {
    if (event.origin !== origin || !event.data || event.data.type !== "pde:height") return;
    var height = Number(event.data.height);
    if (!isFinite(height) || height <= 0 || height > 20000) return;
    frames.forEach(function (frame) {
      if (frame.contentWindow === event.source) frame.style.height = height + "px";
    });
  });
})();
