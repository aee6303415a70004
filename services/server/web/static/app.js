// The dashboard's shared behaviour. No inline scripts anywhere: the pages' CSP forbids them.
(function () {
  const KEY = "chronoverse-theme";
  const root = document.documentElement;
  const saved = localStorage.getItem(KEY);
  if (saved === "dark" || saved === "light") root.dataset.theme = saved;

  function current() {
    if (root.dataset.theme) return root.dataset.theme;
    return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  document.addEventListener("click", function (event) {
    const toggle = event.target.closest("[data-theme-toggle]");
    if (!toggle) return;
    const next = current() === "dark" ? "light" : "dark";
    root.dataset.theme = next;
    localStorage.setItem(KEY, next);
  });
})();
