// flowrun web UI: live updates (server-sent events), keyboard shortcuts, opening what a link points at.
// Plain JavaScript, no libraries; the pages work without it (links and forms only).
(function () {
  "use strict";

  // Open the <details> holding the element a #fragment names, and every <details> around it.
  function reveal() {
    if (!location.hash) return;
    var el = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (!el) return;
    for (var p = el; p; p = p.parentElement) if (p.tagName === "DETAILS") p.open = true;
    el.scrollIntoView({block: "start"});
  }
  window.addEventListener("hashchange", reveal);

  // Live: a page holding #live[data-live] listens to the event stream. The runs list fetches
  // itself again on each event and swaps #live; a run page reloads once the run's status or
  // its number of steps differs from what the page shows (data-status, data-steps).
  function live() {
    var box = document.getElementById("live");
    if (!box || !box.dataset.live || !window.EventSource) return;
    var busy = false, again = false, last = null;
    var source = new EventSource(box.dataset.live);
    function swap() {
      busy = true;
      var url = new URL(location.href);
      url.searchParams.set("fragment", "live");
      fetch(url, {credentials: "same-origin"}).then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html !== null && html !== last) {
            last = html;
            var active = document.activeElement;  // keep the keyboard's place across the swap
            var href = active && box.contains(active) ? active.getAttribute("href") : null;
            box.innerHTML = html;
            var back = href && box.querySelector('a[href="' + CSS.escape(href) + '"]');
            if (back) back.focus();
          }
          busy = false;
          if (again) { again = false; swap(); }
        }, function () { busy = false; });
    }
    source.addEventListener("runs", function () { if (busy) again = true; else swap(); });
    source.addEventListener("run", function (e) {
      var data = JSON.parse(e.data);
      if (data.status !== box.dataset.status || String(data.steps) !== box.dataset.steps) {
        source.close();
        location.reload();
      }
    });
  }

  // Keyboard: "/" searches, "j"/"k" move between runs in the list, "g r" / "g f" go to runs / flows.
  var pending = "";
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey || (t && /^(INPUT|SELECT|TEXTAREA)$/.test(t.tagName))) return;
    if (e.key === "/") { var q = document.getElementById("q"); if (q) { e.preventDefault(); q.focus(); } return; }
    if (pending === "g") {
      pending = "";
      if (e.key === "r") location.href = "/ui/runs"; else if (e.key === "f") location.href = "/ui/flows";
      return;
    }
    if (e.key === "g") { pending = "g"; return; }
    if (e.key === "j" || e.key === "k") {
      var links = Array.prototype.slice.call(document.querySelectorAll("a.run-link"));
      if (!links.length) return;
      var i = links.indexOf(document.activeElement);
      i = e.key === "j" ? Math.min(links.length - 1, i + 1) : Math.max(0, i - 1);
      links[i].focus();
      e.preventDefault();
    }
  });

  document.addEventListener("DOMContentLoaded", function () { reveal(); live(); });
})();
