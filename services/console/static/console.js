/*
 * rigwatch console page: the operations API (/api/v1) in a browser, kept live by its event stream.
 *
 * - The API token is asked for once and kept in sessionStorage (this tab only). Every call sends
 *   it as "Authorization: Bearer"; EventSource cannot send headers, so the event stream is opened
 *   with a single-use ticket from POST /api/v1/events/ticket instead of putting the token in a URL.
 * - Subscribe first, then read the state (as GET /api/v1/events says): events that arrive while
 *   the state is being read are queued and applied after it, in order, so nothing in between is
 *   lost. Every reconnect does the same.
 * - Every text taken from a record goes into the page as a text node or an attribute value,
 *   never as HTML; the Content-Security-Policy allows no inline script either.
 * - Buttons appear only where the caller's role allows the operation; the API checks again.
 */
"use strict";

(function () {
  const API = "/api/v1";
  const TOKEN_KEY = "rigwatch.console.token";
  const RANK = { viewer: 1, operator: 2, approver: 3, admin: 4 };
  const STREAM_KINDS = ["alert", "window", "deployment", "audit"];
  const CHART_KINDS = ["drift", "accuracy", "health"];
  const SEVERITY_ORDER = { critical: 0, warning: 1 };
  const REASONS = ["accuracy", "data_drift", "errors", "scheduled_refresh", "scoring_speed", "deprecation", "other"];
  const REFUSALS = new Set(["guardrail_failed", "approval_refused", "load_failed"]);
  const AUDIT_KEPT = 1000;
  const AUDIT_SHOWN = 200;
  const WINDOWS_KEPT = 360; // the console keeps as many per (kind, subject)
  // Which versions the scorers serve comes from their heartbeats, too frequent to follow one by one.
  const SCORERS_REFRESH_MS = 30000;
  const SVG_NS = "http://www.w3.org/2000/svg";

  const state = {
    token: null,
    me: null,
    deployments: [],
    pending: [],
    alerts: new Map(), // alert_id -> the firing record
    audit: new Map(), // event_id -> event
    models: [],
    series: new Map(), // "kind|subject" -> Map("start|end" -> window)
    fetched: new Set(), // "kind|subject" whose history was asked for on this connection
    stream: null,
    generation: 0, // bumped by every (re)connect and sign-out: late answers of an older one are dropped
    retries: 0,
    retryTimer: 0,
    loading: false,
    queue: [],
    refreshSeq: 0,
    refreshTimer: 0,
    dirty: new Set(),
    frame: 0,
    cards: new Map(), // deployment -> its card's elements (kept, so a half-typed version survives updates)
    rows: new Map(), // change_id -> its table row
  };

  // ------------------------------------------------------------------ DOM helpers (text only)

  function $(id) {
    return document.getElementById(id);
  }

  function attrs(node, given) {
    for (const [key, value] of Object.entries(given || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (typeof value === "function") node.addEventListener(key.replace(/^on/, ""), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
  }

  function fill(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function h(tag, given, ...children) {
    const node = document.createElement(tag);
    attrs(node, given);
    return fill(node, children);
  }

  function svg(tag, given, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    attrs(node, given);
    return fill(node, children);
  }

  function code(text, extra) {
    return h("code", extra, text === null || text === undefined ? "—" : text);
  }

  // ------------------------------------------------------------------ formatting

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function clock(ms) {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function when(ms) {
    if (ms === null || ms === undefined) return "—";
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(ms)}`;
  }

  function num(value, digits = 3) {
    if (typeof value !== "number" || !Number.isFinite(value)) return "—";
    if (Math.abs(value) >= 1000) return value.toFixed(0);
    return String(Number(value.toPrecision(digits)));
  }

  function can(role) {
    return !!state.me && (RANK[state.me.role] || 0) >= RANK[role];
  }

  // ------------------------------------------------------------------ the API

  class ApiError extends Error {
    constructor(status, body) {
      super(body && typeof body.error === "string" ? body.error : `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function call(method, path, body) {
    const headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API + path, init);
    } catch (err) {
      throw new ApiError(0, { error: `the console did not answer (${err.message})` });
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const error = new ApiError(response.status, data);
      // A token removed while the page is open: ask for another rather than failing on every call.
      if (response.status === 401 && state.me) signOut(`Signed out: ${error.message}`);
      throw error;
    }
    return { status: response.status, data };
  }

  function failure(err) {
    let text = err.message;
    const results = err.body && Array.isArray(err.body.guardrails) ? err.body.guardrails : [];
    const failed = results.filter((g) => !g.passed).map((g) => `${g.name}: ${g.detail}`);
    if (failed.length) text += ` (${failed.join("; ")})`;
    return err.status ? `${err.status}: ${text}` : text;
  }

  function showResult(node, ok, text) {
    node.className = `result ${ok ? "ok" : "failed"}`;
    node.textContent = text;
  }

  // ------------------------------------------------------------------ signing in and out

  async function signIn(token) {
    state.token = token || null;
    try {
      state.me = (await call("GET", "/me")).data;
    } catch (err) {
      state.token = null;
      // Without a token a 401 only means this console wants one (no anonymous access): no error.
      showSignIn(token || err.status !== 401 ? failure(err) : "");
      return;
    }
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    showApp();
    connect();
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    closeStream();
    clearTimeout(state.refreshTimer);
    state.generation += 1;
    state.token = null;
    state.me = null;
    state.deployments = [];
    state.pending = [];
    state.alerts.clear();
    state.audit.clear();
    state.series.clear();
    state.fetched.clear();
    state.queue = [];
    state.retries = 0;
    for (const card of state.cards.values()) card.root.remove();
    for (const row of state.rows.values()) row.remove();
    state.cards.clear();
    state.rows.clear();
    setLive("off", "not connected");
    showSignIn(message || "");
  }

  function showSignIn(message) {
    $("app").hidden = true;
    $("who").hidden = true;
    $("signin").hidden = false;
    $("signin-error").textContent = message;
    $("token").focus();
  }

  function showApp() {
    $("signin").hidden = true;
    $("signin-error").textContent = "";
    $("principal").textContent = state.me.principal;
    $("role").textContent = state.me.role;
    $("sign-out").textContent = state.token ? "Sign out" : "Sign in with a token";
    $("who").hidden = false;
    $("app").hidden = false;
    mark("all");
  }

  function setLive(name, text) {
    const live = $("live");
    live.dataset.state = name;
    live.textContent = text;
  }

  // ------------------------------------------------------------------ the event stream

  function closeStream() {
    if (state.stream) state.stream.close();
    state.stream = null;
    clearTimeout(state.retryTimer);
  }

  async function connect() {
    closeStream();
    const generation = ++state.generation;
    setLive(state.retries ? "retry" : "off", state.retries ? "reconnecting…" : "connecting…");
    let url = `${API}/events?kinds=${STREAM_KINDS.join(",")}`;
    if (state.token) {
      try {
        const { data } = await call("POST", "/events/ticket");
        url += `&ticket=${encodeURIComponent(data.ticket)}`;
      } catch (err) {
        if (generation === state.generation && state.me) retry(failure(err));
        return;
      }
    }
    if (generation !== state.generation) return;
    const source = new EventSource(url);
    state.stream = source;
    state.loading = true;
    state.queue = [];
    // "open" comes with the response headers, after the console subscribed this stream.
    source.onopen = () => {
      if (generation === state.generation) load(generation);
    };
    for (const kind of STREAM_KINDS) {
      source.addEventListener(kind, (event) => received(generation, kind, event.data));
    }
    source.addEventListener("overflow", () => {
      if (generation === state.generation) retry("the page fell behind the event stream");
    });
    // The browser would reconnect by itself, but with a spent ticket: reconnect here with a new one.
    source.onerror = () => {
      if (generation === state.generation) retry("the event stream was interrupted");
    };
  }

  function retry(why) {
    closeStream();
    state.generation += 1;
    const delay = Math.min(30000, 1000 * 2 ** Math.min(state.retries, 5));
    state.retries += 1;
    setLive("retry", `reconnecting in ${Math.round(delay / 1000)} s (${why})`);
    state.retryTimer = setTimeout(connect, delay);
  }

  function received(generation, kind, text) {
    if (generation !== state.generation) return;
    let record;
    try {
      record = JSON.parse(text);
    } catch (_) {
      return;
    }
    if (state.loading) state.queue.push([kind, record]);
    else apply(kind, record);
  }

  async function load(generation) {
    state.refreshSeq += 1; // a refresh begun before this read answers older state: drop it
    let answers;
    try {
      answers = await Promise.all([
        call("GET", "/deployments"),
        call("GET", "/changes"),
        call("GET", "/alerts?state=active"),
        call("GET", `/audit?limit=${AUDIT_KEPT}`),
        call("GET", "/models"),
      ]);
    } catch (err) {
      if (generation === state.generation && state.me) retry(`reading the state failed: ${failure(err)}`);
      return;
    }
    if (generation !== state.generation) return;
    const [deployments, changes, alerts, audit, models] = answers.map((a) => a.data);
    state.deployments = deployments.deployments;
    state.pending = changes.pending;
    state.alerts = new Map(alerts.alerts.map((a) => [a.alert_id, a]));
    state.audit.clear();
    for (const event of audit.events) addAudit(event);
    state.models = models.models;
    // Windows are read again on every connection: the ones missed while away are in the console.
    state.series.clear();
    state.fetched.clear();
    state.loading = false;
    const queued = state.queue;
    state.queue = [];
    for (const [kind, record] of queued) apply(kind, record);
    state.retries = 0;
    setLive("live", "live");
    fetchSeries(generation);
    mark("all");
  }

  function apply(kind, record) {
    if (kind === "alert") {
      if (record.state === "firing") state.alerts.set(record.alert_id, record);
      else state.alerts.delete(record.alert_id);
      mark("alerts");
    } else if (kind === "audit") {
      addAudit(record);
      mark("audit");
      if (record.action === "register") refreshModels();
    } else if (kind === "window") {
      applyWindow(record);
    } else if (kind === "deployment") {
      // The console folds deployment records with the lifecycle's own rules: ask it, not a copy here.
      clearTimeout(state.refreshTimer);
      state.refreshTimer = setTimeout(refreshDeployments, 100);
    }
  }

  function addAudit(event) {
    state.audit.set(event.event_id, event);
    if (state.audit.size > AUDIT_KEPT) state.audit.delete(state.audit.keys().next().value);
  }

  async function refreshDeployments() {
    const generation = state.generation;
    const seq = ++state.refreshSeq;
    try {
      const [deployments, changes] = await Promise.all([call("GET", "/deployments"), call("GET", "/changes")]);
      if (generation !== state.generation || seq !== state.refreshSeq) return;
      state.deployments = deployments.data.deployments;
      state.pending = changes.data.pending;
      fetchSeries(generation);
      mark("deployments");
      mark("changes");
    } catch (err) {
      // The next deployment event or reconnect reads them again.
      console.warn("rigwatch: reading the deployments failed:", failure(err));
    }
  }

  async function refreshModels() {
    try {
      state.models = (await call("GET", "/models")).data.models;
      mark("models");
    } catch (err) {
      console.warn("rigwatch: reading the models failed:", failure(err));
    }
  }

  // ------------------------------------------------------------------ windows

  function charted() {
    const versions = new Set();
    for (const d of state.deployments) {
      if (d.champion) versions.add(d.champion);
      if (d.challenger) versions.add(d.challenger);
    }
    return versions;
  }

  function fetchSeries(generation) {
    for (const subject of charted()) {
      for (const kind of CHART_KINDS) {
        const key = `${kind}|${subject}`;
        if (state.fetched.has(key)) continue;
        state.fetched.add(key);
        const query = `kind=${encodeURIComponent(kind)}&subject=${encodeURIComponent(subject)}&limit=${WINDOWS_KEPT}`;
        call("GET", `/windows?${query}`)
          .then(({ data }) => {
            if (generation !== state.generation) return;
            for (const window of data.windows) mergeWindow(window);
            mark("charts");
          })
          .catch((err) => {
            state.fetched.delete(key);
            console.warn(`rigwatch: reading ${kind} windows of ${subject} failed:`, failure(err));
          });
      }
    }
  }

  function mergeWindow(window) {
    const key = `${window.kind}|${window.subject}`;
    let kept = state.series.get(key);
    if (!kept) state.series.set(key, (kept = new Map()));
    // A window delivered twice (at-least-once) replaces its first copy.
    kept.set(`${window.window_start}|${window.window_end}`, window);
    if (kept.size > WINDOWS_KEPT) {
      let oldest = null;
      for (const [k, w] of kept) if (oldest === null || w.window_end < kept.get(oldest).window_end) oldest = k;
      kept.delete(oldest);
    }
  }

  function applyWindow(window) {
    if (window.kind === "comparison") {
      const champion = window.detail && window.detail.champion;
      for (const d of state.deployments) {
        const last = d.comparison;
        if (d.challenger === window.subject && d.champion === champion && (!last || window.window_end >= last.window_end)) {
          d.comparison = window;
          mark("deployments");
        }
      }
      return;
    }
    if (!CHART_KINDS.includes(window.kind) || !charted().has(window.subject)) return;
    mergeWindow(window);
    mark("charts");
  }

  // ------------------------------------------------------------------ rendering

  function mark(part) {
    state.dirty.add(part);
    if (!state.frame) state.frame = requestAnimationFrame(render);
  }

  function render() {
    state.frame = 0;
    const dirty = state.dirty;
    state.dirty = new Set();
    if (!state.me) return;
    const all = dirty.has("all");
    if (all || dirty.has("alerts")) renderAlerts();
    if (all || dirty.has("deployments")) renderDeployments();
    else if (dirty.has("charts")) renderCharts();
    if (all || dirty.has("changes")) renderChanges();
    if (all || dirty.has("audit")) renderAudit();
    if (all || dirty.has("models")) renderModels();
  }

  function renderAlerts() {
    const firing = [...state.alerts.values()].sort(
      (a, b) => (SEVERITY_ORDER[a.severity] ?? 9) - (SEVERITY_ORDER[b.severity] ?? 9) || a.first_seen - b.first_seen,
    );
    $("alerts").replaceChildren(...firing.map(alertItem));
    $("no-alerts").hidden = firing.length > 0;
    $("alert-count").textContent = firing.length ? `(${firing.length})` : "";
  }

  function alertItem(a) {
    const severity = a.severity in SEVERITY_ORDER ? a.severity : "other";
    return h(
      "li",
      { class: `alert ${severity}`, "data-alert-id": a.alert_id, "data-severity": a.severity },
      h("span", { class: "severity" }, a.severity),
      h("strong", { class: "rule" }, a.rule),
      code(a.alert_id, { class: "alert-id" }),
      h("span", { class: "message" }, a.message),
      h("span", { class: "figures" }, `${a.metric} ${num(a.value)} (threshold ${num(a.threshold)})`),
      h("span", { class: "since" }, `since ${when(a.first_seen)}`),
    );
  }

  function renderDeployments() {
    const container = $("deployments");
    const names = new Set(state.deployments.map((d) => d.deployment));
    for (const [name, card] of state.cards) {
      if (!names.has(name)) {
        card.root.remove();
        state.cards.delete(name);
      }
    }
    state.deployments.forEach((d, i) => {
      let card = state.cards.get(d.deployment);
      if (!card) {
        card = makeCard(d.deployment);
        state.cards.set(d.deployment, card);
      }
      // Moved only when out of place: moving a card would take the focus out of its fields.
      if (container.children[i] !== card.root) container.insertBefore(card.root, container.children[i] || null);
      updateCard(card, d);
    });
    $("no-deployments").hidden = state.deployments.length > 0;
    renderCharts();
  }

  function makeCard(name) {
    const card = {
      name,
      root: h("article", { class: "deployment", "data-deployment": name }),
      badges: h("span", { class: "badges" }),
      facts: h("dl", { class: "facts" }),
      verdict: h("div", { class: "verdict" }),
      charts: h("div", { class: "charts" }),
    };
    card.root.append(h("header", null, h("h3", null, name), card.badges), card.facts, card.verdict, card.charts);
    if (can("operator")) {
      card.actions = makeActions(card);
      card.root.append(card.actions.form);
    }
    return card;
  }

  function makeActions(card) {
    const version = h("input", {
      class: "version",
      name: "version",
      placeholder: "model version",
      list: "model-versions",
      required: true,
      pattern: "[0-9a-fA-F]{4,12}",
      title: "a registered model version, or a unique prefix of at least 4 hex digits",
      autocomplete: "off",
      spellcheck: "false",
      "aria-label": `model version to promote on ${card.name}`,
    });
    const reason = h(
      "select",
      { name: "reason", "aria-label": "reason" },
      REASONS.map((r) => h("option", { value: r, selected: r === "other" }, r.replace("_", " "))),
    );
    const comment = h("input", {
      class: "comment",
      name: "comment",
      placeholder: "comment for the audit trail",
      maxlength: 2000,
      "aria-label": "comment",
    });
    const force = can("admin") ? h("input", { type: "checkbox", name: "force" }) : null;
    const promote = h("button", { type: "submit", class: "promote" }, "Promote");
    const rollback = h("button", { type: "button", class: "rollback" }, "Roll back");
    const result = h("p", { class: "result", role: "status" });
    const actions = { version, reason, comment, force, promote, rollback, result };
    const form = h(
      "form",
      { class: "actions" },
      version,
      reason,
      comment,
      force ? h("label", { title: "admin: promote even if guardrails fail" }, force, " force") : null,
      promote,
      rollback,
      result,
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = { version: version.value.trim(), reason: reason.value, comment: comment.value.trim() || null };
      if (force && force.checked) body.force = true;
      operate(card, "promote", body, (status, data) =>
        status === 202
          ? `Proposed ${data.change.champion} as change ${data.change.change_id.slice(0, 8)}: it waits for another principal's approval.`
          : `Promoted: ${card.name} now serves ${data.change.champion}.`,
      );
    });
    rollback.addEventListener("click", () => {
      operate(card, "rollback", { reason: reason.value, comment: comment.value.trim() || null }, (_, data) =>
        `Rolled back: ${card.name} serves ${data.change.champion} again.`,
      );
    });
    actions.form = form;
    return actions;
  }

  async function operate(card, verb, body, describe) {
    const { promote, rollback, result } = card.actions;
    promote.disabled = rollback.disabled = true;
    result.className = "result";
    result.textContent = `${verb}…`;
    try {
      const { status, data } = await call("POST", `/deployments/${encodeURIComponent(card.name)}/${verb}`, body);
      showResult(result, true, describe(status, data));
      if (verb === "promote") card.actions.version.value = "";
      refreshDeployments();
    } catch (err) {
      showResult(result, false, failure(err));
    } finally {
      promote.disabled = false;
      const d = state.deployments.find((x) => x.deployment === card.name);
      rollback.disabled = !(d && d.previous_champion);
    }
  }

  function fact(term, ...value) {
    return [h("dt", null, term), h("dd", null, ...value)];
  }

  function updateCard(card, d) {
    card.badges.replaceChildren(
      ...[
        d.requires_approval ? h("span", { class: "badge" }, "approval required") : null,
        d.pending && d.pending.length ? h("span", { class: "badge" }, `${d.pending.length} pending`) : null,
      ].filter(Boolean),
    );
    let challenger = ["none"];
    if (d.challenger) {
      const mode = d.challenger_mode === "canary" ? `canary, serves ${num(d.challenger_percent)} % of rigs` : "shadow";
      const auto = d.auto_promote ? `; promoted by itself on a better verdict (at least ${d.min_pairs} pairs)` : "";
      challenger = [h("span", { class: "swatch challenger" }), code(d.challenger, { class: "challenger" }), ` (${mode}${auto})`];
    }
    const served = d.versions_served && d.versions_served.length;
    card.facts.replaceChildren(
      ...fact("champion", h("span", { class: "swatch champion" }), code(d.champion, { class: "champion" })),
      ...fact("previous", code(d.previous_champion, { class: "previous" })),
      ...fact("challenger", challenger),
      ...fact("scorers serve", served ? d.versions_served.map((v, i) => [i ? ", " : "", code(v)]) : "no scorer heard from lately"),
      ...fact("last change", `${when(d.time)} by ${d.actor} (${d.reason})`, d.comment ? `: ${d.comment}` : ""),
    );
    renderVerdict(card, d);
    if (card.actions) {
      const { rollback } = card.actions;
      rollback.textContent = d.previous_champion ? `Roll back to ${d.previous_champion}` : "Roll back";
      rollback.disabled = !d.previous_champion;
      rollback.title = d.previous_champion ? "serve the previous champion again" : "no previous champion to roll back to";
    }
  }

  function renderVerdict(card, d) {
    card.verdict.hidden = !d.challenger;
    if (!d.challenger) return;
    const c = d.comparison;
    if (!c) {
      card.verdict.replaceChildren("Comparison: no verdict yet (no comparison window of this pair).");
      return;
    }
    const m = c.metrics || {};
    const detail = c.detail && typeof c.detail === "object" ? c.detail : {};
    const verdict = String(detail.verdict || "unknown");
    const figures = [
      `${num(m.n, 6)} labelled pairs`,
      `accuracy challenger ${num(m.challenger_accuracy)} vs champion ${num(m.champion_accuracy)}`,
      `agreement ${num(m.agreement)}`,
      `sequential p ${num(m.sequential_p, 2)}`,
      detail.n_needed ? `about ${detail.n_needed} pairs needed` : null,
      `as of ${when(c.window_end)}`,
    ].filter(Boolean);
    card.verdict.replaceChildren(
      "Comparison: ",
      h("span", { class: "word", "data-verdict": verdict }, verdict),
      " — ",
      h("span", { class: "figures" }, figures.join("; ")),
      detail.reason ? h("div", { class: "reason" }, String(detail.reason)) : null,
    );
  }

  // ------------------------------------------------------------------ charts (inline SVG)

  const CHARTS = [
    { kind: "drift", title: "Drift score", lines: [{ metric: "drift_score", label: "" }], floor: 0 },
    {
      kind: "accuracy",
      title: "Accuracy",
      lines: [
        { metric: "accuracy", label: "realised" },
        { metric: "estimated_accuracy", label: "estimated", dashed: true },
      ],
      floor: 0,
      ceiling: 1,
    },
    { kind: "health", title: "Latency p99 (ms)", lines: [{ metric: "latency_ms.p99", label: "" }], floor: 0 },
  ];

  function points(kind, version, metric) {
    const kept = state.series.get(`${kind}|${version}`);
    if (!kept) return [];
    return [...kept.values()]
      .map((w) => [w.window_end, w.metrics ? w.metrics[metric] : null])
      .map(([t, v]) => [t, typeof v === "number" && Number.isFinite(v) ? v : null])
      .sort((a, b) => a[0] - b[0]);
  }

  function renderCharts() {
    for (const d of state.deployments) {
      const card = state.cards.get(d.deployment);
      if (!card) continue;
      const versions = [["champion", d.champion], ["challenger", d.challenger]].filter(([, v]) => v);
      let x0 = Infinity;
      let x1 = -Infinity;
      const charts = CHARTS.map((spec) => {
        const lines = [];
        for (const [role, version] of versions) {
          for (const line of spec.lines) {
            const pts = points(spec.kind, version, line.metric);
            for (const [t, v] of pts) {
              if (v === null) continue;
              x0 = Math.min(x0, t);
              x1 = Math.max(x1, t);
            }
            lines.push({ ...line, role, version, points: pts });
          }
        }
        return { spec, lines };
      });
      // One time axis for the card's charts, so drift, accuracy and latency line up.
      card.charts.replaceChildren(...charts.map(({ spec, lines }) => chart(spec, lines, x0, x1)));
    }
  }

  function chart(spec, lines, x0, x1) {
    const figure = h("figure", { class: "chart", "data-chart": spec.kind }, h("h4", null, spec.title));
    const values = lines.flatMap((l) => l.points.map((p) => p[1]).filter((v) => v !== null));
    if (!values.length) {
      figure.append(h("p", { class: "nodata" }, "no windows yet"));
      return figure;
    }
    const W = 360;
    const H = 150;
    const left = 46;
    const right = 10;
    const top = 8;
    const bottom = 20;
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    const margin = (hi - lo) * 0.08 || Math.abs(hi) * 0.05 || 1;
    lo = Math.max(spec.floor ?? -Infinity, lo - margin);
    hi = Math.min(spec.ceiling ?? Infinity, hi + margin);
    if (hi <= lo) hi = lo + 1;
    if (x1 <= x0) {
      x0 -= 1000;
      x1 += 1000;
    }
    const sx = (t) => left + ((t - x0) / (x1 - x0)) * (W - left - right);
    const sy = (v) => top + ((hi - v) / (hi - lo)) * (H - top - bottom);
    const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": spec.title });
    // Enough significant digits that the ticks differ: accuracy near 1 spans a few thousandths.
    const scale = Math.max(Math.abs(lo), Math.abs(hi)) / (hi - lo);
    const digits = Math.min(10, Math.max(3, Math.ceil(Math.log10(scale)) + 2));
    for (let i = 0; i <= 3; i += 1) {
      const v = lo + ((hi - lo) * i) / 3;
      const y = sy(v).toFixed(1);
      plot.append(
        svg("line", { class: "grid", x1: left, x2: W - right, y1: y, y2: y }),
        svg("text", { class: "axis", x: left - 4, y: Number(y) + 3, "text-anchor": "end" }, num(v, digits)),
      );
    }
    const span = x1 - x0 > 86400000 ? when : clock;
    plot.append(
      svg("text", { class: "axis", x: left, y: H - 5, "text-anchor": "start" }, span(x0)),
      svg("text", { class: "axis", x: W - right, y: H - 5, "text-anchor": "end" }, span(x1)),
    );
    const legend = h("div", { class: "legend" });
    for (const line of lines) {
      const name = [line.role, line.label].filter(Boolean).join(" ");
      const classes = `series ${line.role}${line.dashed ? " dashed" : ""}`;
      // A window without the metric (no labels, say) breaks the line rather than bridging it.
      let d = "";
      let pen = false;
      const dots = [];
      line.points.forEach(([t, v], i) => {
        if (v === null) {
          pen = false;
          return;
        }
        const next = line.points[i + 1];
        if (!pen && (!next || next[1] === null)) dots.push([sx(t), sy(v)]);
        d += `${pen ? "L" : "M"}${sx(t).toFixed(1)},${sy(v).toFixed(1)}`;
        pen = true;
      });
      if (!d) continue;
      const label = `${name} (${line.version})`;
      plot.append(
        svg("path", { class: classes, d, "data-series": `${line.role}:${line.metric}` }, svg("title", null, label)),
        ...dots.map(([cx, cy]) => svg("circle", { class: `dot ${line.role}`, cx, cy, r: 2.2 })),
      );
      const last = line.points.filter((p) => p[1] !== null).pop();
      legend.append(
        h("span", null, h("span", { class: `swatch ${line.role}${line.dashed ? " dashed" : ""}` }), `${name} ${num(last[1])}`),
      );
    }
    figure.append(plot, legend);
    return figure;
  }

  // ------------------------------------------------------------------ pending changes

  function renderChanges() {
    const body = $("changes").tBodies[0];
    const ids = new Set(state.pending.map((c) => c.change_id));
    for (const [id, row] of state.rows) {
      if (!ids.has(id)) {
        row.remove();
        state.rows.delete(id);
      }
    }
    state.pending.forEach((c, i) => {
      let row = state.rows.get(c.change_id);
      if (!row) {
        row = changeRow(c);
        state.rows.set(c.change_id, row);
      }
      if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
    });
    const any = state.pending.length > 0;
    $("changes").hidden = !any;
    $("no-changes").hidden = any;
    $("change-count").textContent = any ? `(${state.pending.length})` : "";
  }

  function changeRow(c) {
    const cell = h("td", { class: "actions-cell" });
    if (can("approver")) {
      const own = c.actor === state.me.principal;
      const approve = h("button", { type: "button", class: "approve", disabled: own }, "Approve");
      const reject = h("button", { type: "button", class: "reject" }, "Reject");
      const buttons = [approve, reject];
      approve.addEventListener("click", () => decide(c, "approve", {}, buttons));
      reject.addEventListener("click", () => decide(c, "reject", { reason: "other" }, buttons));
      cell.append(approve, " ", reject);
      // Four eyes: the API refuses a proposer's own approval; withdrawing it (reject) is allowed.
      if (own) cell.append(h("div", { class: "note" }, "yours: another approver approves it"));
    }
    return h(
      "tr",
      { "data-change-id": c.change_id, "data-deployment": c.deployment },
      h("td", { class: "when" }, when(c.time)),
      h("td", null, c.deployment),
      h("td", { title: c.change_id }, code(c.change_id.slice(0, 8))),
      h("td", null, code(c.previous_champion), " → ", code(c.champion)),
      h("td", null, c.actor),
      h("td", null, c.reason),
      h("td", null, c.comment || ""),
      cell,
    );
  }

  async function decide(c, verb, body, buttons) {
    const out = $("changes-result");
    const id = c.change_id.slice(0, 8);
    for (const b of buttons) b.disabled = true;
    out.className = "result";
    out.textContent = `${verb} ${id}…`;
    try {
      const { data } = await call("POST", `/changes/${encodeURIComponent(c.change_id)}/${verb}`, body);
      showResult(
        out,
        true,
        verb === "approve"
          ? `Approved change ${id}: ${c.deployment} now serves ${data.change.champion}.`
          : `Rejected change ${id} of ${c.deployment}.`,
      );
      // The row goes when the console has read the settled change (its deployment event).
      refreshDeployments();
    } catch (err) {
      showResult(out, false, `Change ${id}: ${failure(err)}`);
      buttons[0].disabled = c.actor === state.me.principal;
      buttons[1].disabled = false;
    }
  }

  // ------------------------------------------------------------------ audit trail and models

  function renderAudit() {
    const events = [...state.audit.values()].sort((a, b) => b.time - a.time);
    $("audit").tBodies[0].replaceChildren(...events.slice(0, AUDIT_SHOWN).map(auditRow));
    const more = $("audit-more");
    if (!events.length) more.textContent = "No audit event yet.";
    else if (events.length > AUDIT_SHOWN) more.textContent = `The newest ${AUDIT_SHOWN} of ${events.length}; GET ${API}/audit lists every one.`;
    else more.textContent = "";
  }

  function auditRow(e) {
    const model = [code(e.model_version)];
    if (e.before && e.after && e.before !== e.after) model.push(h("div", null, code(e.before), " → ", code(e.after)));
    const failed = (e.guardrails || []).filter((g) => !g.passed);
    return h(
      "tr",
      { "data-event-id": e.event_id, "data-action": e.action },
      h("td", { class: "when" }, when(e.time)),
      h("td", { class: "actor" }, e.actor),
      h("td", { class: `action${REFUSALS.has(e.action) ? " refused" : ""}` }, e.action),
      h("td", null, e.deployment || "—"),
      h("td", null, model),
      h("td", null, e.reason || ""),
      h(
        "td",
        { class: "comment" },
        e.comment || "",
        failed.map((g) => h("div", { class: "guardrail" }, `${g.name}: ${g.detail}`)),
      ),
    );
  }

  function renderModels() {
    $("model-versions").replaceChildren(
      ...state.models.map((m) => h("option", { value: m.version, label: [m.name, m.note].filter(Boolean).join(": ") || null })),
    );
  }

  // ------------------------------------------------------------------ start

  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("token");
    const token = input.value.trim();
    input.value = "";
    if (token) signIn(token);
  });
  $("sign-out").addEventListener("click", () => signOut(""));
  setInterval(() => {
    if (state.me && state.stream && !state.loading) refreshDeployments();
  }, SCORERS_REFRESH_MS);
  signIn(sessionStorage.getItem(TOKEN_KEY));
})();
