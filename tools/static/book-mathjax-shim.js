// The Jupyter widget manager (@jupyter-widgets/html-manager 1.x) typesets widget labels with
// MathJax 2's API (MathJax.Hub.Queue); the book's pages run MathJax 3, where that call throws.
// Map it onto MathJax 3. Loaded with `defer` after MathJax, before the widgets render (on load).
(function () {
  var mj = window.MathJax;
  if (!mj || mj.Hub || !mj.startup) return;
  mj.Hub = {
    Queue: function (command) {
      var element = Array.isArray(command) ? command[2] : undefined;
      if (!element) return;
      mj.startup.promise
        .then(function () { return mj.typesetPromise([element]); })
        .catch(function (err) { console.warn("MathJax could not typeset a widget label", err); });
    },
  };
})();
