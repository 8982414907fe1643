// Keeps the part of a page marked #live current while the tab is visible: asks every
// second whether any host changed (a number), and fetches the part again when it did, or
// every 30 s for the ages. The filter, the scroll position and focus outside #live stay.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var status = document.getElementById("live-status");
  if (!live || !window.fetch) return;
  var generation = live.getAttribute("data-generation");
  var fetched = Date.now();
  var busy = false;

  function say(text) {
    if (status) status.textContent = text;
  }

  function refresh() {
    busy = true;
    fetch(location.href, { headers: { "X-Rollcall-Live": "1" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { location.reload(); throw new Error("signed out"); }
        if (!r.ok) throw new Error("HTTP " + r.status);
        generation = r.headers.get("X-Rollcall-Generation") || generation;
        return r.text();
      })
      .then(function (html) {
        var x = window.scrollX, y = window.scrollY;
        live.innerHTML = html;
        live.setAttribute("data-generation", generation);
        window.scrollTo(x, y);
        fetched = Date.now();
        say("Live: updated " + new Date().toLocaleTimeString());
      })
      .catch(function (e) { say("Live updates paused: " + e.message); })
      .then(function () { busy = false; });
  }

  function tick() {
    if (busy || document.visibilityState !== "visible") return;
    if (Date.now() - fetched > 30000) { refresh(); return; }
    fetch("/ui/generation", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { location.reload(); throw new Error("signed out"); }
        return r.text();
      })
      .then(function (g) { if (g.trim() !== generation) refresh(); })
      .catch(function (e) { say("Live updates paused: " + e.message); });
  }

  say("Live: updates while this tab is visible");
  setInterval(tick, 1000);
  document.addEventListener("visibilitychange", tick);
})();
