// Applies the remembered theme before the first paint (loaded without defer, in <head>).
// Without a remembered choice the page follows prefers-color-scheme (app.css).
(function () {
  try {
    const saved = localStorage.getItem("chronoverse-theme");
    if (saved === "dark" || saved === "light") document.documentElement.dataset.theme = saved;
  } catch (e) {
    // Storage can be disabled; the page then follows the system's scheme.
  }
})();
