// The dashboard's shared behaviour: the theme toggle, the notifications drawer, local times.
// No inline scripts anywhere: the pages' CSP forbids them. Each page's own script is its own file.
(function () {
  const KEY = "chronoverse-theme";
  const root = document.documentElement;

  // --- theme: dark or light, following prefers-color-scheme until the user picks one ----------
  function currentTheme() {
    if (root.dataset.theme) return root.dataset.theme;
    return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  function showTheme() {
    document.querySelectorAll("[data-theme-toggle]").forEach(function (toggle) {
      toggle.setAttribute("aria-pressed", currentTheme() === "dark" ? "true" : "false");
    });
  }

  // --- times: the server writes UTC; show each in the reader's timezone, named ---------------
  const localFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
    hourCycle: "h23", timeZoneName: "short",
  });

  function localizeTimes(scope) {
    if (!scope || !scope.querySelectorAll) return;
    const found = Array.from(scope.querySelectorAll("time[data-local-time]"));
    if (scope.matches && scope.matches("time[data-local-time]")) found.push(scope);
    found.forEach(function (el) {
      const when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      if (!el.title) el.title = el.textContent;  // the UTC text stays as the tooltip
      el.textContent = localFormat.format(when);
    });
  }

  // --- the notifications drawer -----------------------------------------------------------
  function drawer() {
    return document.getElementById("notifications-drawer");
  }

  function setDrawer(toggle, open) {
    const panel = drawer();
    if (!panel) return;
    panel.hidden = !open;
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    if (open && window.htmx) {
      htmx.ajax("GET", toggle.getAttribute("href"), { target: panel, swap: "innerHTML" })
        .then(function () { htmx.trigger(document.body, "notifications-changed"); });
    }
  }

  document.addEventListener("click", function (event) {
    const themeToggle = event.target.closest("[data-theme-toggle]");
    if (themeToggle) {
      const next = currentTheme() === "dark" ? "light" : "dark";
      root.dataset.theme = next;
      try { localStorage.setItem(KEY, next); } catch (e) { /* not remembered, still applied */ }
      showTheme();
      return;
    }
    const drawerToggle = event.target.closest("[data-drawer-toggle]");
    if (drawerToggle && drawer() && window.htmx) {
      event.preventDefault();  // without htmx, the link opens the notifications page
      setDrawer(drawerToggle, drawer().hidden);
    }
  });

  document.addEventListener("keydown", function (event) {
    const panel = drawer();
    if (event.key !== "Escape" || !panel || panel.hidden) return;
    const toggle = document.querySelector("[data-drawer-toggle]");
    if (toggle) { setDrawer(toggle, false); toggle.focus(); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    showTheme();
    localizeTimes(document);
  });
  document.addEventListener("htmx:load", function (event) { localizeTimes(event.detail.elt); });
})();
