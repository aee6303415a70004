// The job page's log viewer: a live tail over SSE, stream filters, auto-scroll, and a line cap.
//
// The server resumes a dropped stream after Last-Event-ID (EventSource sends it when it
// reconnects by itself); when EventSource gives up (the server answered with an error, e.g. while
// it restarts), this script opens a new one from the last line it shows (?attempt=&after=).
// Either way a line whose (attempt, seq) is not after the last one shown is dropped: no duplicate
// even if a server resent one. Lines are only ever set with textContent, never as HTML.
(function () {
  "use strict";

  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 15000;

  function start(viewer) {
    const box = viewer.querySelector("[data-log-lines]");
    const stateEl = viewer.querySelector("[data-log-state]");
    const jump = viewer.querySelector("[data-log-jump]");
    const capped = viewer.querySelector("[data-log-capped]");
    const empty = viewer.querySelector("[data-log-empty]");
    const baseUrl = viewer.dataset.streamUrl;
    const maxLines = parseInt(viewer.dataset.maxLines, 10) || 50000;

    let source = null;
    let lastAttempt = 0; // the attempt of the last line or separator shown
    let lastSeq = -1; // the seq of the last line shown within lastAttempt
    let ended = false;
    let retryMs = RETRY_MIN_MS;
    let retryTimer = null;
    let pending = []; // elements waiting for the next animation frame
    let frameAsked = false;
    let pinned = true; // follow the bottom until the user scrolls up
    let shown = 0;

    function setState(state, text) {
      stateEl.dataset.state = state;
      stateEl.textContent = text;
      viewer.dataset.state = state;
    }

    function moved() {
      // The job's status and timeline reload (htmx listens for this on the body).
      document.body.dispatchEvent(new CustomEvent("log-moved"));
    }

    function lineElement(data) {
      const row = document.createElement("div");
      row.className = "log-line stream-" + data.stream;
      row.dataset.seq = String(data.seq);
      row.dataset.stream = data.stream;
      row.dataset.attempt = String(data.attempt);
      if (data.ts) row.title = data.ts;
      const seq = document.createElement("span");
      seq.className = "log-seq";
      seq.textContent = String(data.seq);
      const text = document.createElement("span");
      text.className = "log-text";
      text.textContent = data.line;
      row.append(seq, text);
      return row;
    }

    function separator(attempt) {
      const row = document.createElement("div");
      row.className = "log-attempt";
      row.setAttribute("role", "separator");
      row.dataset.attempt = String(attempt);
      row.textContent = "attempt " + attempt;
      return row;
    }

    function queue(element) {
      pending.push(element);
      if (pending.length > maxLines) {
        // A background tab gets no animation frames: keep only what could be shown.
        pending = pending.slice(pending.length - maxLines);
        capped.hidden = false;
      }
      if (!frameAsked) {
        frameAsked = true;
        requestAnimationFrame(flush);
      }
    }

    function flush() {
      frameAsked = false;
      if (pending.length === 0) return;
      const fragment = document.createDocumentFragment();
      for (const element of pending) fragment.append(element);
      shown += pending.length;
      pending = [];
      box.append(fragment);
      empty.hidden = true;
      if (shown > maxLines) {
        let excess = shown - maxLines;
        shown -= excess;
        while (excess-- > 0 && box.firstChild) box.firstChild.remove();
        capped.hidden = false;
      }
      if (pinned) box.scrollTop = box.scrollHeight;
    }

    function atBottom() {
      return box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    }

    box.addEventListener("scroll", function () {
      pinned = atBottom();
      jump.hidden = pinned;
    });

    jump.addEventListener("click", function () {
      pinned = true;
      jump.hidden = true;
      box.scrollTop = box.scrollHeight;
    });

    function onLog(event) {
      const data = JSON.parse(event.data);
      if (data.attempt < lastAttempt) return;
      if (data.attempt === lastAttempt && data.seq <= lastSeq) return; // shown already
      if (lastAttempt === 0) {
        moved(); // the first line: the job is running
        if (data.attempt > 1) queue(separator(data.attempt));
      }
      if (data.attempt !== lastAttempt) lastSeq = -1;
      lastAttempt = data.attempt;
      lastSeq = data.seq;
      queue(lineElement(data));
    }

    function onAttempt(event) {
      const data = JSON.parse(event.data);
      if (data.attempt <= lastAttempt) return;
      lastAttempt = data.attempt;
      lastSeq = -1;
      queue(separator(data.attempt));
      moved();
    }

    function onEnd(event) {
      const data = JSON.parse(event.data);
      ended = true;
      source.close();
      if (lastAttempt === 0) empty.textContent = "The job printed no line.";
      setState(
        "ended",
        data.incomplete ? "ended (lines of this attempt were lost)" : "ended",
      );
      moved();
    }

    function url() {
      // From the first attempt: a retried job's earlier attempts say why it was retried.
      if (lastAttempt === 0) return baseUrl + "?attempt=1";
      return baseUrl + "?attempt=" + lastAttempt + "&after=" + lastSeq;
    }

    function connect() {
      retryTimer = null;
      source = new EventSource(url());
      source.addEventListener("open", function () {
        retryMs = RETRY_MIN_MS;
        setState("live", "live");
      });
      source.addEventListener("log", onLog);
      source.addEventListener("attempt", onAttempt);
      source.addEventListener("end", onEnd);
      source.addEventListener("error", onError);
    }

    function onError() {
      if (ended) return;
      if (source.readyState === EventSource.CONNECTING) {
        // EventSource retries by itself and sends Last-Event-ID: the server resumes after it.
        setState("reconnecting", "reconnecting…");
        return;
      }
      // EventSource gave up: the server answered with an error. Ask it why before retrying.
      source.close();
      setState("reconnecting", "reconnecting…");
      probe();
    }

    function probe() {
      const controller = new AbortController();
      fetch(url(), { headers: { Accept: "text/event-stream" }, signal: controller.signal })
        .then(function (response) {
          controller.abort();
          if (response.status === 401) {
            setState("signed-out", "signed out: sign in again and reload this page");
          } else if (response.status === 404) {
            setState("gone", "this job no longer exists");
          } else {
            later();
          }
        })
        .catch(later);
    }

    function later() {
      if (retryTimer !== null || ended) return;
      retryTimer = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    }

    viewer.querySelectorAll("[data-log-filter]").forEach(function (toggle) {
      const hide = "hide-" + toggle.dataset.logFilter;
      function apply() {
        box.classList.toggle(hide, !toggle.checked);
      }
      toggle.addEventListener("change", apply);
      apply();
    });

    window.addEventListener("pagehide", function () {
      if (source) source.close();
    });

    connect();
  }

  function init() {
    document.querySelectorAll("[data-log-viewer]").forEach(start);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
