// The dashboard's behaviour: refresh the live parts every few seconds, apply a filter as soon as
// it changes, and send the Replay buttons' POSTs (failed events, failed deliveries). A file, not inline: the page's
// Content-Security-Policy allows no inline script.
"use strict";

(function () {
  const main = document.getElementById("dashboard");
  if (!main) {
    return;
  }
  const liveUrl = main.dataset.liveUrl;
  const replayUrl = main.dataset.replayUrl;
  const replayDeliveriesUrl = main.dataset.replayDeliveriesUrl;
  const refreshMs = 1000 * (Number(main.dataset.refreshSeconds) || 5);
  const notice = document.getElementById("notice");
  const stale = document.getElementById("stale");
  let timer = 0;
  let latest = 0; // the number of the newest refresh started; only its answer is shown

  function show(element, text, kind) {
    element.textContent = text;
    if (kind) {
      element.className = "banner " + kind;
    }
    element.hidden = !text;
  }

  // What went wrong, from a problem document (application/problem+json) when there is one.
  async function reason(response) {
    try {
      const problem = await response.json();
      return problem.detail || problem.title || response.statusText;
    } catch (error) {
      return response.statusText || "no details";
    }
  }

  // Replace every [data-live] element of the page with its fresh copy from /dashboard/live.
  async function refresh() {
    const mine = ++latest;
    try {
      const response = await fetch(liveUrl, { cache: "no-store", headers: { Accept: "text/html" } });
      const html = response.ok ? await response.text() : "";
      if (mine !== latest) {
        return; // a newer refresh (after a replay, say) started meanwhile: its answer wins
      }
      if (response.status === 401) {
        // The key stopped working (revoked, or signed out elsewhere): the page load signs in again.
        window.location.reload();
        return;
      }
      if (!response.ok) {
        const why = await reason(response);
        show(stale, "Could not refresh (HTTP " + response.status + "): " + why +
          " The figures below are from the last refresh.");
        return;
      }
      if (document.getElementById("live-problem")) {
        // The page was an error page; now that data is back, load the whole page.
        window.location.reload();
        return;
      }
      const fresh = new DOMParser().parseFromString(html, "text/html");
      for (const part of fresh.querySelectorAll("[data-live][id]")) {
        const current = document.getElementById(part.id);
        if (current) {
          current.replaceWith(document.importNode(part, true));
        }
      }
      show(stale, "");
    } catch (error) {
      if (mine === latest) {
        show(stale, "Could not refresh: " + error.message +
          ". The figures below are from the last refresh.");
      }
    }
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(tick, refreshMs);
  }

  async function tick() {
    if (!document.hidden) {
      await refresh();
    }
    schedule();
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      refresh();
    }
  });

  // What a Replay button replays: the POST it sends and what its notices say.
  function replayOf(button) {
    const data = button.dataset;
    if (data.replay) {
      return {
        url: replayUrl,
        body: { event_ids: [data.replay] },
        what: "event " + data.replay,
        done: function () { return "requeued; a worker will process it again."; },
        none: "is no longer failed; nothing was replayed.",
      };
    }
    if (data.replayDelivery) {
      return {
        url: replayDeliveriesUrl,
        body: { delivery_ids: [data.replayDelivery] },
        what: "delivery " + data.replayDelivery,
        done: function () { return "requeued; a deliverer will send it again."; },
        none: "is no longer failed; nothing was replayed.",
      };
    }
    return {
      url: replayDeliveriesUrl,
      body: { endpoint: data.replayEndpoint },
      what: "endpoint " + data.replayEndpoint,
      done: function (result) {
        return "has " + result.requeued +
          " failed deliveries requeued; a deliverer will send them again.";
      },
      none: "has no failed deliveries left; nothing was replayed.",
    };
  }

  // Send one Replay; the header is what the server checks against cross-site requests.
  async function replay(button) {
    const target = replayOf(button);
    const count = Number(button.dataset.replayCount) || 1;
    if (count > 1 && !window.confirm("Send " + count + " failed deliveries of " + target.what +
        " again?")) {
      return;
    }
    const label = button.textContent;
    button.disabled = true;
    button.textContent = "Replaying…";
    function again() {
      button.disabled = false;
      button.textContent = label;
    }
    try {
      const response = await fetch(target.url, {
        method: "POST",
        cache: "no-store",
        headers: { "Content-Type": "application/json", "X-EventFlo-Action": "replay" },
        body: JSON.stringify(target.body),
      });
      if (response.status === 401) {
        window.location.reload();
        return;
      }
      if (!response.ok) {
        show(notice, "Replay of " + target.what + " refused (HTTP " + response.status + "): " +
          await reason(response), "error");
        again();
        return;
      }
      const result = await response.json();
      const subject = target.what.charAt(0).toUpperCase() + target.what.slice(1);
      if (result.requeued) {
        show(notice, subject + " " + target.done(result), "ok");
      } else {
        show(notice, subject + " " + target.none, "warning");
      }
    } catch (error) {
      show(notice, "Replay of " + target.what + " failed: " + error.message, "error");
      again();
      return;
    }
    await refresh();
    schedule();
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest(
      "button[data-replay], button[data-replay-delivery], button[data-replay-endpoint]");
    if (button && !button.disabled) {
      replay(button);
    }
  });

  const filters = document.getElementById("filters");
  if (filters) {
    filters.addEventListener("change", function () {
      filters.requestSubmit();
    });
  }

  schedule();
})();
