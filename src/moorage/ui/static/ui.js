// moorage's web UI: search as you type, copy buttons, "/" to search. The pages work without
// it; it only saves round trips.
"use strict";

(function () {
  // A search form marked data-live="ID" asks for its results alone (?fragment=1) as the
  // visitor types, and swaps them into the element ID; the address follows the query.
  function live(form) {
    const target = document.getElementById(form.dataset.live);
    const input = form.querySelector("input[type=search]");
    if (!target || !input) return;
    let timer = 0;
    let latest = 0;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(async function () {
        const params = new URLSearchParams(new FormData(form));
        const shown = form.action + "?" + params.toString();
        params.set("fragment", "1");
        const asked = ++latest;
        try {
          const response = await fetch(form.action + "?" + params.toString(), {
            credentials: "same-origin",
            headers: { Accept: "text/html" },
          });
          if (!response.ok || asked !== latest) return;
          const page = new DOMParser().parseFromString(await response.text(), "text/html");
          target.replaceChildren(...page.body.childNodes);
          history.replaceState(null, "", shown);
        } catch (error) {
          // offline or the server went away: the form still submits the usual way
        }
      }, 150);
    });
  }

  function copy(button) {
    button.addEventListener("click", async function () {
      const source = document.getElementById(button.dataset.copy);
      const status = button.closest("section") && button.closest("section").querySelector(".copied");
      try {
        await navigator.clipboard.writeText(source.textContent);
        if (status) status.textContent = "Copied: " + source.textContent;
      } catch (error) {
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        if (status) status.textContent = "Selected: press Ctrl+C to copy";
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-live]").forEach(live);
    document.querySelectorAll("button[data-copy]").forEach(copy);
    document.addEventListener("keydown", function (event) {
      const field = document.querySelector("form[data-live] input[type=search]");
      const typing = event.target.closest && event.target.closest("input, textarea, select");
      if (event.key === "/" && field && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
        event.preventDefault();
        field.focus();
        field.select();
      }
    });
  });
})();
