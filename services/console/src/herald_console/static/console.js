// Herald console: live updates over Server-Sent Events. The server renders every row and list;
// this script only fetches the fragment that changed and puts it in place (no HTML is built here).
"use strict";
(function () {
  const live = document.body.dataset.live || "";
  if (!live || !window.EventSource) return;
  // From the notice this page was rendered at: what changed in between is not lost.
  const source = new EventSource("/live?since=" + encodeURIComponent(document.body.dataset.seq || ""));

  async function fragment(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (response.status !== 200) return null;
    const holder = document.createElement("template");
    holder.innerHTML = (await response.text()).trim();
    return holder.content.firstElementChild;
  }

  if (live === "events") {
    const table = document.getElementById("events");
    const body = table.tBodies[0];
    const filters = table.dataset.filters;
    const firstPage = table.dataset.firstPage === "yes";
    const refresh = async (event) => {
      const id = event.data;
      const current = document.getElementById("event-" + id);
      if (!current && (!firstPage || event.type !== "event")) return;
      const row = await fragment("/events/" + encodeURIComponent(id) + "/row?" + filters);
      if (!row) return;
      const again = document.getElementById("event-" + id);
      if (again) {
        again.replaceWith(row);
      } else {
        const empty = body.querySelector("tr.empty");
        if (empty) empty.remove();
        row.classList.add("fresh");
        body.prepend(row);
      }
    };
    source.addEventListener("event", refresh);
    source.addEventListener("delivery", refresh);
  } else if (live.startsWith("event:")) {
    const id = live.slice("event:".length);
    source.addEventListener("delivery", async (event) => {
      if (event.data !== id) return;
      const part = await fragment("/events/" + encodeURIComponent(id) + "/deliveries");
      const current = document.getElementById("deliveries");
      if (part && current) current.replaceWith(part);
    });
  } else {
    // The other pages are short: a change they show reloads them, unless a form is being filled.
    const shown = { "dead-letters": ["dead_letter", "replayed"], silences: ["silence"], services: ["service"] }[live] || [];
    let timer = null;
    const reload = () => {
      const busy = document.activeElement && ["INPUT", "SELECT"].includes(document.activeElement.tagName);
      const chosen = document.querySelector("input[type=checkbox]:checked");
      if (busy || chosen) return;
      clearTimeout(timer);
      timer = setTimeout(() => window.location.reload(), 300);
    };
    shown.forEach((kind) => source.addEventListener(kind, reload));
    // A replayed dead letter's receipt changes its "now" column.
    if (live === "dead-letters") {
      source.addEventListener("delivery", (event) => {
        if (document.querySelector('tr[data-event="' + CSS.escape(event.data) + '"]')) reload();
      });
    }
  }
})();
