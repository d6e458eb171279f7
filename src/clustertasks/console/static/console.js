// The console's only script: confirmations before a change, and the task page kept live
// from the task's event stream. Every page works without it (forms post, pages reload).
"use strict";

// A form with data-confirm asks first; delegated, so forms swapped in later ask too.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// The task page: each message of the stream makes the page fetch its changing part again
// (rendered by the server, the same template as the first load); at most one fetch is in
// flight, and messages that arrive meanwhile cost one more fetch, not one each.
(() => {
  const live = document.getElementById("live");
  if (!live) return;
  const status = document.getElementById("live-status");
  let fetching = false;
  let again = false;
  let lastState = stateOf();
  let source = null;

  function stateOf() {
    const part = live.querySelector(".task-live");
    return part ? part.dataset.state : "";
  }

  async function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    try {
      do {
        again = false;
        const response = await fetch(live.dataset.live, { credentials: "same-origin", headers: { accept: "text/html" } });
        if (!response.ok) break;
        const html = await response.text();
        const focused = document.activeElement && document.activeElement.id;
        live.innerHTML = html;
        if (focused) {
          const element = document.getElementById(focused);
          if (element) element.focus();
        }
        const state = stateOf();
        if (state !== lastState && status) status.textContent = `Task ${state}`;
        lastState = state;
        grow();
      } while (again);
    } finally {
      fetching = false;
    }
  }

  // The running stage's bar grows with the clock between messages.
  function grow() {
    const part = live.querySelector(".task-live");
    if (!part || part.dataset.state !== "running") return;
    const begin = Number(part.dataset.begin);
    const now = Math.max(Date.now() * 1000, Number(part.dataset.end));
    const span = Math.max(now - begin, 1);
    for (const stage of part.querySelectorAll(".stage")) {
      const rect = stage.querySelector("rect");
      if (!rect || !stage.dataset.start) continue;
      const start = Number(stage.dataset.start);
      const end = stage.dataset.end ? Number(stage.dataset.end) : now;
      const left = Math.min(100, Math.max(0, (100 * (start - begin)) / span));
      const width = Math.min(100 - left, Math.max(0.6, (100 * (end - start)) / span));
      rect.setAttribute("x", left.toFixed(2));
      rect.setAttribute("width", width.toFixed(2));
    }
  }

  function follow() {
    if (!window.EventSource) return;
    source = new EventSource(live.dataset.stream);
    // The opening snapshot may be newer than the page it follows: it refreshes too.
    for (const kind of ["snapshot", "task", "stage", "event", "result"]) {
      source.addEventListener(kind, refresh);
    }
    source.addEventListener("end", () => {
      // The task has finished: show its last state, and do not let the browser reconnect.
      source.close();
      refresh();
    });
    live.dataset.following = "true";
  }

  setInterval(grow, 1000);
  follow();
})();
