/* Inside a frame: tell the embedding page our height whenever it changes, so the frame fits
   the page without a scroll bar of its own (read by pde-embed.js on the partner's page). The
   message holds a height only: nothing else leaves the frame. */
(function () {
  "use strict";
  if (window.parent === window) return;
  var last = 0;
  function send() {
    var height = Math.ceil(document.documentElement.getBoundingClientRect().height);
    if (height === last) return;
    last = height;
    window.parent.postMessage({ type: "pde:height", height: height }, "*");
  }
  window.addEventListener("load", send);
  if (window.ResizeObserver) new ResizeObserver(send).observe(document.documentElement);
  else window.addEventListener("resize", send);
  send();
})();
