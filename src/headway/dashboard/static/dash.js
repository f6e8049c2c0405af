// Headway dashboard: refreshes <main> from the page's JSON endpoint every 2 s, and sends the
// actions (rollback, promote, abort) as POSTs carrying the token in a header.
(function () {
  "use strict";
  var body = document.body, main = document.getElementById("main");
  var flash = document.getElementById("flash"), tokenInput = document.getElementById("token");
  var clock = document.getElementById("clock"), busy = false;
  tokenInput.value = sessionStorage.getItem("headway-token") || "";
  tokenInput.addEventListener("input", function () {
    sessionStorage.setItem("headway-token", tokenInput.value.trim());
  });
  function say(text, ok) {
    flash.textContent = text;
    flash.className = ok ? "ok" : "bad";
  }
  function refresh() {
    var url = body.getAttribute("data-poll");
    if (!url || busy) { return; }
    fetch(url, {headers: {"Accept": "application/json"}, cache: "no-store"})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        if (!busy) { main.innerHTML = data.html; }
        clock.textContent = "updated " + new Date().toLocaleTimeString();
        clock.className = "";
      })
      .catch(function () { clock.textContent = "agent unreachable"; clock.className = "bad"; });
  }
  document.addEventListener("click", function (ev) {
    var button = ev.target.closest("button[data-action]");
    if (!button) { return; }
    var token = tokenInput.value.trim();
    if (!token) {
      document.getElementById("tokenbox").open = true;
      say("paste the dashboard token first (headway dashboard token)", false);
      return;
    }
    busy = true;
    button.disabled = true;
    say(button.textContent + "…", true);
    fetch(button.getAttribute("data-action"), {
      method: "POST", headers: {"X-Headway-Token": token}, cache: "no-store"
    }).then(function (r) { return r.json().then(function (d) { return [r.ok, d]; }); })
      .then(function (res) { say(res[1].message || res[1].error, res[0]); })
      .catch(function () { say("the agent did not answer", false); })
      .then(function () { busy = false; button.disabled = false; refresh(); });
  });
  setInterval(refresh, 2000);
})();
