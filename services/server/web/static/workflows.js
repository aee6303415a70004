// The workflows pages: countdowns to the next runs, the form's kind and schedule switches, and the
// confirm dialog of destructive actions. No inline scripts: the pages' CSP forbids them; every hook
// is a data- attribute.
(function () {
  "use strict";

  // --- countdowns: computed in the browser each second, never by polling the server ---------
  function countdownText(ms) {
    if (ms <= 0) return "due now";
    const s = Math.floor(ms / 1000);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (d > 0) return "in " + d + "d " + h + "h";
    if (h > 0) return "in " + h + "h " + m + "m";
    if (m > 0) return "in " + m + "m " + sec + "s";
    return "in " + sec + "s";
  }

  function tick() {
    const now = Date.now();
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      const at = Date.parse(el.dataset.countdown);
      if (!isNaN(at)) el.textContent = "(" + countdownText(at - now) + ")";
    });
  }

  function showZone() {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    document.querySelectorAll("[data-local-zone]").forEach(function (el) {
      el.textContent = zone;
    });
  }

  // --- the form: show the inputs of the chosen kind and schedule -----------------------------
  function syncForm(form) {
    const kind = form.querySelector("[data-kind-select]");
    if (kind) {
      form.querySelectorAll("[data-kind-fields]").forEach(function (fields) {
        fields.hidden = fields.dataset.kindFields !== kind.value;
      });
    }
    const choice = form.querySelector("[data-schedule-choice]:checked");
    if (choice) {
      form.querySelectorAll("[data-schedule]").forEach(function (part) {
        part.hidden = part.dataset.schedule !== choice.value;
      });
    }
  }

  document.addEventListener("change", function (event) {
    const form = event.target.closest("[data-workflow-form]");
    if (form) syncForm(form);
  });

  // --- confirm dialog: a form with data-confirm asks first -----------------------------------
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!form.matches || !form.matches("form[data-confirm]")) return;
    if (form.dataset.confirmed === "yes") return;
    const dialog = document.querySelector("[data-confirm-dialog]");
    if (!dialog || typeof dialog.showModal !== "function") return; // no dialog: the form goes
    event.preventDefault();
    dialog.querySelector("[data-confirm-message]").textContent = form.dataset.confirm;
    dialog.querySelector("[data-confirm-button]").textContent =
      form.dataset.confirmLabel || "Confirm";
    dialog.returnValue = "";
    dialog.addEventListener(
      "close",
      function () {
        if (dialog.returnValue !== "confirm") return;
        form.dataset.confirmed = "yes";
        form.submit();
      },
      { once: true }
    );
    dialog.showModal();
  });

  function start() {
    document.querySelectorAll("[data-workflow-form]").forEach(syncForm);
    showZone();
    tick();
    if (document.querySelector("[data-countdown]")) setInterval(tick, 1000);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
