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

  // A form in the live part that the user has started to fill in is not replaced under
  // their fingers: the refresh waits until it is sent or put back.
  function editing() {
    var fields = live.querySelectorAll("input, select, textarea");
    for (var i = 0; i < fields.length; i++) {
      var e = fields[i];
      if (e.type === "hidden") continue;
      if (e.tagName === "SELECT") {
        for (var j = 0; j < e.options.length; j++) {
          if (e.options[j].selected !== e.options[j].defaultSelected) return true;
        }
      } else if (e.value !== e.defaultValue) {
        return true;
      }
    }
    return live.contains(document.activeElement) && document.activeElement.tagName !== "A";
  }

  function tick() {
    if (busy || document.visibilityState !== "visible" || editing()) return;
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
