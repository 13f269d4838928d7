// A classic script, run before the console's modules: when one of them does not arrive (the
// connection dropped, control restarted during the load), the page says so and offers a
// reload instead of staying blank.
"use strict";

window.addEventListener("error", (event) => {
  const script = event.target;
  if (!(script instanceof HTMLScriptElement) || script.type !== "module") return;
  const box = document.getElementById("message");
  const again = document.createElement("button");
  again.type = "button";
  again.id = "reload";
  again.textContent = "Reload";
  again.addEventListener("click", () => location.reload());
  box.replaceChildren(
    "The console did not load completely: one of its files did not arrive. ", again
  );
  box.hidden = false;
}, true);
