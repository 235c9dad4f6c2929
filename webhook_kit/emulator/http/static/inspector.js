// The emulator inspector. Every element is built with textContent and attributes, never
// innerHTML, so nothing a message carries can become markup or script. Every action goes
// to the emulator's control API; the overview is read again whenever the event stream
// says that something changed.
"use strict";

(() => {
  const TOKEN = document.querySelector('meta[name="emulator-page-token"]').content;
  const $ = (id) => document.getElementById(id);
  const state = {
    data: null,
    selected: null,
    filter: "",
    cards: new Map(),
    timer: null,
    reading: false,
    again: false,
    shown: "", // what the details panel was last drawn from: redrawn only when it changes
    json: null, // { sid, text }: the REST JSON the user asked for
  };

  // -- DOM helpers --------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  const time = (seconds) => (seconds ? new Date(seconds * 1000).toISOString().slice(11, 19) : "");
  const dateTime = (seconds) =>
    seconds ? new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "";
  const isWeb = (url) => typeof url === "string" && /^https?:\/\//i.test(url);

  function notice(text, isError) {
    const box = $("notice");
    box.textContent = text;
    box.classList.toggle("error", Boolean(isError));
  }

  // -- talking to the emulator ----------------------------------------------------------

  async function api(path, form) {
    const options = { headers: { "X-Emulator-Page": TOKEN, Accept: "application/json" } };
    if (form !== undefined) {
      options.method = "POST";
      options.body = form instanceof URLSearchParams ? form : new URLSearchParams(form);
    }
    const response = await fetch(path, options);
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (error) {
      body = { message: text };
    }
    if (!response.ok) {
      const message = body && body.message ? body.message : response.statusText;
      throw new Error(`${response.status}: ${message}`);
    }
    return body;
  }

  async function act(label, path, form) {
    try {
      const body = await api(path, form);
      notice(label(body));
      await refresh();
      return body;
    } catch (error) {
      notice(`Error: ${error.message}`, true);
      return null;
    }
  }

  // One read at a time: changes that arrive meanwhile are picked up by one more read.
  async function refresh() {
    if (state.reading) {
      state.again = true;
      return;
    }
    state.reading = true;
    const query = state.filter ? `?Address=${encodeURIComponent(state.filter)}` : "";
    try {
      state.data = await api(`/_emulator/overview${query}`);
      render();
    } catch (error) {
      notice(`Cannot read the emulator: ${error.message}`, true);
    } finally {
      state.reading = false;
    }
    if (state.again) {
      state.again = false;
      refreshSoon();
    }
  }

  // A burst of changes (a chaos run, a load test) costs a few reads a second, not one each.
  function refreshSoon() {
    if (state.timer) return;
    state.timer = setTimeout(() => {
      state.timer = null;
      refresh();
    }, 150);
  }

  function listen() {
    if (!window.EventSource) {
      setInterval(refresh, 2000);
      return;
    }
    const source = new EventSource("/_emulator/events");
    source.onmessage = refreshSoon;
  }

  // -- rendering -----------------------------------------------------------------------

  function render() {
    const data = state.data;
    $("account").textContent = data.account_sid;
    $("clock").textContent = `${dateTime(data.now)}${data.manual_clock ? " · manual" : ""}`;
    $("advance-form").hidden = !data.manual_clock;
    $("chaos-on").checked = Boolean(data.chaos);
    $("chaos-state").textContent = data.chaos
      ? `On (seed ${data.chaos.seed}); ${data.dropped_callbacks} final callback(s) dropped so far.`
      : "Off: every callback arrives once, in order.";
    const ledger = $("ledger-link");
    ledger.hidden = !isWeb(data.ledger_url);
    if (isWeb(data.ledger_url)) ledger.href = data.ledger_url;
    renderNumbers(data);
    renderRules(data);
    renderFilter(data);
    renderPhones(data);
    renderDetail();
  }

  function renderNumbers(data) {
    $("numbers").replaceChildren(
      ...data.numbers.map((n) =>
        el(
          "li",
          { class: "number" },
          el("strong", { text: n.number }),
          hook("Incoming", n.sms_url),
          hook("Fallback", n.fallback_url),
          hook("Status callback", n.status_callback),
        ),
      ),
    );
    if (!data.numbers.length) {
      $("numbers").append(el("li", { class: "muted", text: "No numbers: add one below." }));
    }
    $("services-section").hidden = !data.services.length;
    $("services").replaceChildren(
      ...data.services.map((s) =>
        el(
          "li",
          { class: "number" },
          el("strong", { text: s.friendly_name }),
          el("div", {}, el("code", { class: "muted", text: s.sid })),
          hook("Inbound", s.inbound_request_url),
          hook("Fallback", s.fallback_url),
          hook("Status callback", s.status_callback),
          el("div", { class: "hook" }, el("span", { class: "muted", text: "Senders: " }), s.senders.join(", ") || "none"),
        ),
      ),
    );
    for (const select of document.querySelectorAll(".number-select")) fillNumbers(select, data);
  }

  function hook(label, url) {
    return el("div", { class: "hook" }, el("span", { class: "muted", text: `${label}: ` }), el("code", { text: url || "—" }));
  }

  function fillNumbers(select, data) {
    const current = select.value;
    select.replaceChildren(...data.numbers.map((n) => el("option", { value: n.number, text: n.number })));
    if (data.numbers.some((n) => n.number === current)) select.value = current;
  }

  function renderRules(data) {
    $("rules").replaceChildren(
      ...data.rules.map((r) =>
        el("li", {
          text: `${r.to || "anyone"} → ${r.status}${r.error_code ? ` (${r.error_code})` : ""}${
            r.body ? ` when body ~ ${r.body}` : ""
          }${r.probability < 1 ? ` p=${r.probability}` : ""}`,
        }),
      ),
    );
  }

  function renderFilter(data) {
    const select = $("filter");
    const current = state.filter;
    const options = [el("option", { value: "", text: "every number and handset" })];
    const numbers = data.numbers.map((n) => n.number);
    const handsets = data.handsets.map((h) => h.address);
    if (current && !numbers.includes(current) && !handsets.includes(current)) handsets.push(current);
    if (numbers.length) {
      options.push(el("optgroup", { label: "Numbers" }, numbers.map((a) => el("option", { value: a, text: a }))));
    }
    if (handsets.length) {
      options.push(el("optgroup", { label: "Handsets" }, handsets.map((a) => el("option", { value: a, text: a }))));
    }
    select.replaceChildren(...options);
    select.value = current;
  }

  function renderPhones(data) {
    const threads = new Map(); // handset -> its messages, in the overview's order
    for (const message of data.messages) {
      const handset = message.handset;
      if (handset === null) continue;
      if (!threads.has(handset)) threads.set(handset, []);
      threads.get(handset).push(message);
    }
    $("empty").hidden = threads.size > 0;
    $("truncated").hidden = !data.truncated;
    const grid = $("phones-grid");
    const focused = document.activeElement && document.activeElement.dataset.sid;
    for (const [address, card] of state.cards) {
      if (!threads.has(address)) {
        card.root.remove();
        state.cards.delete(address);
      }
    }
    for (const [address, messages] of threads) {
      let card = state.cards.get(address);
      if (!card) {
        card = phoneCard(address);
        state.cards.set(address, card);
      }
      grid.append(card.root); // keeps the order of the overview
      const info = data.handsets.find((h) => h.address === address) || { numbers: [], opted_out_of: [] };
      card.status.textContent = info.opted_out_of.length ? `Opted out of ${info.opted_out_of.join(", ")}` : "";
      fillNumbers(card.to, data);
      const several = new Set(messages.map((m) => (m.resource.from === address ? m.resource.to : m.resource.from))).size > 1;
      const atEnd = card.thread.scrollHeight - card.thread.scrollTop - card.thread.clientHeight < 40;
      card.thread.replaceChildren(...messages.map((m) => bubble(m, several)));
      if (atEnd || messages.length > card.count) card.thread.scrollTop = card.thread.scrollHeight;
      card.count = messages.length;
    }
    if (focused) {
      const again = grid.querySelector(`[data-sid="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }

  function phoneCard(address) {
    const to = el("select", { class: "number-select", "aria-label": `Number ${address} texts` });
    const body = el("input", { name: "Body", "aria-label": `Message from ${address}`, placeholder: "Text message", autocomplete: "off" });
    const media = el("input", { name: "MediaUrl", type: "url", "aria-label": `Media URL from ${address}`, placeholder: "Media URL (optional)" });
    const send = (text) => {
      if (!text.trim() && !media.value.trim()) {
        notice("Type a message or a media URL first.", true);
        body.focus();
        return Promise.resolve();
      }
      const form = new URLSearchParams({ From: address, To: to.value, Body: text });
      if (media.value.trim()) form.append("MediaUrl", media.value.trim());
      return act((r) => `${address} texted ${to.value}: ${r.replies.length} reply(ies)`, "/_emulator/send", form).then((r) => {
        if (r) {
          body.value = "";
          media.value = "";
        }
      });
    };
    const compose = el(
      "form",
      { class: "compose", onsubmit: (event) => { event.preventDefault(); send(body.value); } },
      to,
      body,
      media,
      el("div", { class: "compose-buttons" },
        el("button", { type: "submit", text: "Send" }),
        el("button", { type: "button", class: "quiet", text: "STOP", onclick: () => send("STOP") }),
        el("button", { type: "button", class: "quiet", text: "START", onclick: () => send("START") }),
      ),
    );
    const thread = el("ol", { class: "thread", "aria-label": `Conversation of ${address}` });
    const status = el("p", { class: "optout" });
    const root = el(
      "section",
      { class: "phone", "data-handset": address, "aria-label": `Handset ${address}` },
      el("header", { class: "phone-head" }, el("h3", { text: address }), status),
      thread,
      compose,
    );
    return { root, thread, to, status, count: 0 };
  }

  function finalOf(message) {
    const line = message.timeline;
    return line.length ? line[line.length - 1] : { status: message.resource.status };
  }

  function bubble(message, showNumber) {
    const m = message.resource;
    const mine = m.from === message.handset; // sent by the handset: drawn on its right
    const last = finalOf(message);
    const dropped = message.webhooks.some((w) => w.chaos.includes("dropped"));
    const failedHook = message.webhooks.some((w) => !w.chaos.includes("dropped") && !(w.status >= 200 && w.status < 300));
    const media = message.media.map((item, index) =>
      el("img", {
        class: "thumb",
        src: isWeb(item.url) ? item.url : null,
        alt: `Media ${index + 1} (${item.content_type})`,
        loading: "lazy",
        width: 96,
        height: 96,
      }),
    );
    const badges = [];
    if (dropped) badges.push(el("span", { class: "badge warn", "data-mark": "dropped", text: "callback dropped" }));
    if (failedHook) badges.push(el("span", { class: "badge warn", text: "webhook failed" }));
    const error = m.error_code ? ` ${m.error_code}` : "";
    return el(
      "li",
      { class: `row ${mine ? "mine" : "theirs"}` },
      el(
        "button",
        {
          type: "button",
          class: `bubble${state.selected === m.sid ? " selected" : ""}`,
          "data-sid": m.sid,
          "data-direction": m.direction,
          "aria-pressed": state.selected === m.sid ? "true" : "false",
          onclick: () => select(m.sid),
        },
        m.body ? el("span", { class: "body", text: m.body }) : null,
        media.length ? el("span", { class: "media" }, media) : null,
        el(
          "span",
          { class: "meta" },
          showNumber ? `${mine ? "to" : "from"} ${mine ? m.to : m.from} · ` : "",
          el("time", { datetime: new Date(message.created_at * 1000).toISOString(), text: time(message.created_at) }),
          " · ",
          el("span", { class: `status s-${last.status}`, "data-status": last.status, text: `${last.status}${error}` }),
        ),
        badges.length ? el("span", { class: "badges" }, badges) : null,
      ),
    );
  }

  function select(sid) {
    state.selected = state.selected === sid ? null : sid;
    for (const node of document.querySelectorAll(".bubble")) {
      const on = node.dataset.sid === state.selected;
      node.classList.toggle("selected", on);
      node.setAttribute("aria-pressed", on ? "true" : "false");
    }
    renderDetail();
    const box = $("detail").getBoundingClientRect();
    if (state.selected && (box.top >= window.innerHeight || box.bottom <= 0)) {
      $("detail").scrollIntoView({ block: "start" }); // below the phones on a narrow screen
    }
  }

  function renderDetail() {
    const box = $("detail");
    const message = state.data && state.data.messages.find((m) => m.resource.sid === state.selected);
    const drawn = JSON.stringify([message || null, state.data && state.data.ledger_url, state.json]);
    if (drawn === state.shown) return; // keeps open sections and focus as they are
    state.shown = drawn;
    if (!message) {
      box.replaceChildren(el("p", { class: "muted", text: "Select a message to see its status timeline and webhooks." }));
      return;
    }
    const m = message.resource;
    const mine = state.json && state.json.sid === m.sid ? state.json.text : null;
    const json = el("pre", { class: "json", id: "json", hidden: mine === null, tabindex: -1, text: mine || "" });
    const showJson = async () => {
      let text;
      try {
        text = JSON.stringify(await api(m.uri), null, 2);
      } catch (error) {
        text = `Error: ${error.message}`;
      }
      state.json = { sid: m.sid, text };
      renderDetail();
      $("json").focus();
    };
    const ledger = state.data.ledger_url;
    box.replaceChildren(
      el("h2", { text: m.direction === "inbound" ? "Message from a handset" : "Message to a handset" }),
      el("p", {}, el("code", { class: "sid", text: m.sid })),
      el("dl", { class: "facts" },
        el("dt", { text: "From" }), el("dd", { text: m.from || "—" }),
        el("dt", { text: "To" }), el("dd", { text: m.to }),
        el("dt", { text: "Direction" }), el("dd", { text: m.direction }),
        el("dt", { text: "Body" }), el("dd", { class: "body", text: m.body || "(empty)" }),
        el("dt", { text: "Segments" }), el("dd", { text: m.num_segments }),
        m.price ? [el("dt", { text: "Price" }), el("dd", { text: `${m.price} ${m.price_unit}` })] : null,
      ),
      el("div", { class: "actions" },
        el("button", { type: "button", id: "show-json", onclick: showJson, text: "REST JSON" }),
        isWeb(ledger) ? el("a", { class: "button", href: `${ledger.replace(/\/$/, "")}/${encodeURIComponent(m.sid)}`, target: "_blank", rel: "noopener noreferrer", text: "In the ledger ↗" }) : null,
      ),
      json,
      el("h3", { text: "Status timeline" }),
      timeline(message),
      el("h3", { text: `Webhooks (${message.webhooks.length})` }),
      message.webhooks.length
        ? el("ol", { class: "webhooks" }, message.webhooks.map(webhook))
        : el("p", { class: "muted", text: "None posted for this message." }),
    );
  }

  function timeline(message) {
    const line = message.timeline.length ? message.timeline : [{ status: message.resource.status, at: null }];
    return el(
      "ol",
      { class: "timeline", id: "timeline" },
      line.map((step) =>
        el(
          "li",
          { "data-status": step.status, class: `s-${step.status}` },
          el("strong", { text: step.status }),
          step.at ? [" ", el("time", { text: time(step.at) })] : null,
          step.error_code ? el("div", { class: "error", text: `Error ${step.error_code}: ${step.error_message}` }) : null,
        ),
      ),
    );
  }

  function webhook(w) {
    const marks = [...w.chaos];
    if (w.out_of_order) marks.push("out of order");
    const dropped = w.chaos.includes("dropped");
    let outcome;
    if (dropped) outcome = "not posted: chaos dropped it";
    else if (w.status !== null) outcome = `HTTP ${w.status}`;
    else outcome = `no answer (${w.failure === "ct" ? "connection failed" : "read timed out"})`;
    const status = w.params.MessageStatus ? ` · ${w.params.MessageStatus}` : "";
    return el(
      "li",
      { class: `webhook${dropped ? " dropped" : ""}`, "data-kind": w.kind, "data-dropped": dropped ? "true" : "false" },
      el("div", { class: "webhook-head" },
        el("span", { class: "badge", text: w.kind }),
        el("strong", { text: `${outcome}${status}` }),
        marks.map((mark) => el("span", { class: "badge warn", "data-mark": mark, text: mark })),
      ),
      el("div", {}, el("code", { class: "url", text: w.url })),
      el("div", { class: "muted" },
        dropped ? `at ${time(w.at)}` : `at ${time(w.at)} · ${Math.round(w.latency * 1000)} ms · ${w.retries} retr${w.retries === 1 ? "y" : "ies"} · ${w.signature}`,
      ),
      w.answer && w.answer.body
        ? el("details", {}, el("summary", { text: w.kind === "status" ? "Answer" : "TwiML answered" }), el("pre", { text: w.answer.body }))
        : null,
    );
  }

  // -- driving -------------------------------------------------------------------------

  function formOf(form) {
    const fields = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (typeof value === "string" && (value.trim() !== "" || name === "Body")) fields.append(name, value);
    }
    return fields;
  }

  function wire() {
    $("text-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const fields = formOf(event.target);
      if (!(fields.get("Body") || "").trim() && !fields.get("MediaUrl")) {
        notice("Type a message or a media URL first.", true);
        event.target.elements.Body.focus();
        return;
      }
      const sent = await act((r) => `${fields.get("From")} texted ${fields.get("To")}: ${r.replies.length} reply(ies)`, "/_emulator/send", fields);
      if (sent) event.target.elements.Body.value = "";
    });
    $("advance-form").addEventListener("submit", (event) => {
      event.preventDefault();
      act((r) => `Clock advanced: ${r.ran} task(s) ran`, "/_emulator/advance", formOf(event.target));
    });
    $("rule-form").addEventListener("submit", (event) => {
      event.preventDefault();
      act((r) => `${r.rules} rule(s)`, "/_emulator/rules", formOf(event.target));
    });
    $("number-form").addEventListener("submit", (event) => {
      event.preventDefault();
      act((r) => `Added ${r.number}`, "/_emulator/numbers", formOf(event.target));
    });
    $("chaos-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const fields = formOf(event.target);
      fields.set("Enabled", "true");
      act(() => "Chaos on", "/_emulator/chaos", fields);
    });
    $("chaos-on").addEventListener("change", (event) => {
      const fields = event.target.checked ? formOf($("chaos-form")) : new URLSearchParams();
      fields.set("Enabled", event.target.checked ? "true" : "false");
      act((r) => (r.chaos ? "Chaos on" : "Chaos off"), "/_emulator/chaos", fields);
    });
    $("reset").addEventListener("click", () => {
      if (window.confirm("Forget every message, number, rule and log?")) {
        state.selected = null;
        act(() => "Reset", "/_emulator/reset", new URLSearchParams());
      }
    });
    $("filter").addEventListener("change", (event) => {
      state.filter = event.target.value;
      refresh();
    });
  }

  wire();
  refresh().then(listen);
})();
