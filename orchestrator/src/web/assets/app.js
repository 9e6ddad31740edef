// weft web view. Plain JavaScript, embedded in the orchestrator binary; no build step.
//
// Rules this file keeps:
// - Everything that came from the server (request text, task titles, device output, error
//   messages) reaches the page through textContent / text nodes, never innerHTML.
// - Live state comes from Server-Sent Events (EventSource). Events trigger re-reads of a
//   request's view; nothing polls the server on a timer. Local timers only redraw clocks.
// - State-changing calls send the session's CSRF token in `x-weft-csrf`.
'use strict';

(() => {
  const CSRF = (document.querySelector('meta[name="weft-csrf"]') || {}).content || '';
  const main = document.getElementById('main');
  const banner = document.getElementById('banner');
  const TERMINAL_TASK = new Set(['succeeded', 'failed', 'skipped', 'cancelled']);
  const TERMINAL_REQUEST = new Set(['succeeded', 'failed', 'cancelled']);
  const TASK_STATUSES = ['pending', 'ready', 'dispatched', 'running', 'succeeded', 'failed', 'skipped', 'cancelled'];
  const PREVIEW_CHARS = 2000;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  // ---- DOM helpers (text only) -------------------------------------------------------------

  function append(node, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
      else node.setAttribute(k === 'className' ? 'class' : k, v === true ? '' : String(v));
    }
    return node;
  }

  function el(tag, attrs, ...children) {
    return append(setAttrs(document.createElement(tag), attrs), children);
  }

  function svg(tag, attrs, ...children) {
    return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
  }

  function badge(status, id) {
    return el('span', { class: 'badge', 'data-status': status, id }, status.replace('_', ' '));
  }

  function showBanner(text) {
    banner.textContent = text;
    banner.hidden = !text;
  }

  // ---- formatting --------------------------------------------------------------------------

  function fmtDuration(ms) {
    if (ms < 0) ms = 0;
    const s = ms / 1000;
    if (s < 10) return `${s.toFixed(1)} s`;
    if (s < 60) return `${Math.round(s)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
    const h = Math.floor(m / 60);
    return `${h} h ${m - h * 60} min`;
  }

  function fmtSize(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    const units = ['KiB', 'MiB', 'GiB', 'TiB'];
    let v = bytes / 1024;
    let u = 0;
    while (v >= 1024 && u < units.length - 1) {
      v /= 1024;
      u += 1;
    }
    return `${v.toFixed(1)} ${units[u]}`;
  }

  function fmtAgo(ms) {
    if (!ms) return 'never';
    const d = Date.now() - ms;
    return d < 2000 ? 'just now' : `${fmtDuration(d)} ago`;
  }

  function fmtTime(ms) {
    return ms ? new Date(ms).toLocaleTimeString() : '';
  }

  function shortId(id) {
    return id.length > 8 ? id.slice(-8) : id;
  }

  // ---- the API -----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message || `HTTP ${status}`);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = { accept: 'application/json' };
    const opts = { method, headers, credentials: 'same-origin', cache: 'no-store' };
    if (method !== 'GET') headers['x-weft-csrf'] = CSRF;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch(path, opts);
    const data = resp.status === 204 ? null : await resp.json().catch(() => null);
    if (!resp.ok) {
      const err = (data && data.error) || {};
      if (resp.status === 401) showBanner('Session expired: run `weft open` for a new login link.');
      throw new ApiError(resp.status, err.code, err.message);
    }
    return data;
  }

  // A page's resources: event sources and timers, all closed when the page is left.
  class Scope {
    constructor() {
      this.sources = [];
      this.timers = [];
      this.alive = true;
    }

    // Opens an EventSource; `handlers` maps event names to functions of the parsed data.
    source(url, handlers) {
      const es = new EventSource(url);
      for (const [name, fn] of Object.entries(handlers)) {
        es.addEventListener(name, (ev) => {
          if (!this.alive) return;
          let data;
          try {
            data = JSON.parse(ev.data);
          } catch (_) {
            return;
          }
          fn(data);
        });
      }
      es.addEventListener('open', () => showBanner(''));
      es.addEventListener('error', () => {
        if (!this.alive || es.closing) return;
        showBanner(es.readyState === EventSource.CLOSED
          ? 'Live updates stopped; reload the page.'
          : 'Live updates interrupted; reconnecting…');
      });
      this.sources.push(es);
      return es;
    }

    every(ms, fn) {
      this.timers.push(setInterval(() => this.alive && fn(), ms));
    }

    dispose() {
      this.alive = false;
      for (const es of this.sources) {
        es.closing = true;
        es.close();
      }
      this.timers.forEach(clearInterval);
    }
  }

  function closeSource(es) {
    es.closing = true;
    es.close();
  }

  // ---- requests list -----------------------------------------------------------------------

  function taskCounts(tasks) {
    const counts = {};
    for (const t of tasks) counts[t.status] = (counts[t.status] || 0) + 1;
    const parts = TASK_STATUSES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`);
    return `${tasks.length} task${tasks.length === 1 ? '' : 's'}${parts.length ? ': ' + parts.join(', ') : ''}`;
  }

  function requestDuration(v) {
    const end = TERMINAL_REQUEST.has(v.status) ? v.updated_at_ms : Date.now();
    return fmtDuration(end - v.created_at_ms);
  }

  function requestsPage() {
    const scope = new Scope();
    const rows = new Map(); // id -> { view, tr }
    const text = el('textarea', {
      id: 'submit-text',
      rows: 2,
      placeholder: 'on laptop run "make test" and on server run "df -h /" then on phone fetch https://example.com',
      'aria-label': 'Request text',
    });
    const error = el('p', { class: 'error', id: 'submit-error', hidden: true });
    const button = el('button', { id: 'submit-button', type: 'submit' }, 'Submit');
    const form = el('form', { class: 'submit' }, text, button);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const value = text.value.trim();
      if (!value) return;
      button.disabled = true;
      error.hidden = true;
      try {
        const view = await api('POST', '/v1/requests', { text: value });
        location.hash = `#/requests/${encodeURIComponent(view.id)}`;
      } catch (e) {
        error.textContent = e.code ? `${e.code}: ${e.message}` : String(e.message);
        error.hidden = false;
      } finally {
        button.disabled = false;
      }
    });
    text.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) form.requestSubmit();
    });

    const tbody = el('tbody');
    const empty = el('p', { class: 'muted', id: 'no-requests', hidden: true }, 'No requests yet.');
    main.replaceChildren(
      el('section', { class: 'card' },
        el('h1', {}, 'New request'),
        form, error,
        el('p', { class: 'hint muted' }, 'Steps separated by "then" run in sequence; "and" runs tasks in parallel. Ctrl+Enter submits.')),
      el('h2', {}, 'Requests'),
      el('table', { id: 'requests' },
        el('thead', {}, el('tr', {}, ['Request', 'Status', 'Tasks', 'Age', 'Duration'].map((h) => el('th', {}, h)))),
        tbody),
      empty);

    function renderRow(id) {
      const entry = rows.get(id);
      const v = entry.view;
      const href = `#/requests/${encodeURIComponent(v.id)}`;
      const tr = el('tr', { class: 'clickable', 'data-request-id': v.id, 'data-status': v.status },
        el('td', { class: 'text' }, el('a', { href, title: v.text }, v.text), ' ', el('span', { class: 'muted mono' }, shortId(v.id))),
        el('td', {}, badge(v.status)),
        el('td', {}, taskCounts(v.tasks)),
        el('td', { title: new Date(v.created_at_ms).toLocaleString() }, fmtAgo(v.created_at_ms)),
        el('td', {}, requestDuration(v)));
      tr.addEventListener('click', (ev) => {
        if (ev.target.tagName !== 'A') location.hash = href;
      });
      if (entry.tr) entry.tr.replaceWith(tr);
      entry.tr = tr;
      return tr;
    }

    function add(view, atTop) {
      if (rows.has(view.id)) {
        rows.get(view.id).view = view;
        renderRow(view.id);
        return;
      }
      rows.set(view.id, { view, tr: null });
      const tr = renderRow(view.id);
      if (atTop) tbody.prepend(tr);
      else tbody.append(tr);
      empty.hidden = true;
    }

    let loaded = false;
    const early = [];
    function apply(ev) {
      if (!loaded) {
        early.push(ev);
        return;
      }
      if (ev.type === 'request_created') {
        if (!rows.has(ev.request_id)) {
          api('GET', `/v1/requests/${encodeURIComponent(ev.request_id)}`).then((v) => scope.alive && add(v, true), () => {});
        }
        return;
      }
      const entry = rows.get(ev.request_id);
      if (!entry) return;
      if (ev.type === 'task_status') {
        const t = entry.view.tasks.find((x) => x.id === ev.task_id);
        if (t) t.status = ev.status;
      } else if (ev.type === 'request_status') {
        entry.view.status = ev.status;
        entry.view.updated_at_ms = ev.at_ms;
      } else if (ev.type === 'graph_edited') {
        api('GET', `/v1/requests/${encodeURIComponent(ev.request_id)}`).then((v) => scope.alive && add(v, false), () => {});
        return;
      }
      renderRow(ev.request_id);
    }

    scope.source('/v1/events', {
      request_created: apply,
      task_status: apply,
      request_status: apply,
      graph_edited: apply,
      lagged: () => load(),
    });

    async function load() {
      try {
        const list = await api('GET', '/v1/requests?limit=100');
        if (!scope.alive) return;
        for (const v of list) add(v, false);
        empty.hidden = rows.size > 0;
        loaded = true;
        early.splice(0).forEach(apply);
      } catch (e) {
        main.append(el('p', { class: 'error' }, `Cannot list requests: ${e.message}`));
      }
    }
    load();
    scope.every(5000, () => rows.forEach((_, id) => renderRow(id)));
    text.focus();
    return scope;
  }

  // ---- one request -------------------------------------------------------------------------

  function requestPage(id) {
    const scope = new Scope();
    const path = `/v1/requests/${encodeURIComponent(id)}`;
    const st = {
      view: null,
      layout: null,
      selected: null,
      expanded: new Set(), // output blocks shown whole
      taskStatus: new Map(), // task id -> status from the event stream (newest)
      requestStatus: null,
    };

    const head = el('section', { class: 'card', id: 'request-head' }, el('p', { class: 'muted' }, 'Loading…'));
    const graph = el('div', { id: 'graph' });
    const legend = el('div', { class: 'legend' }, 'Task status:', TASK_STATUSES.map((s) => badge(s)),
      el('span', {}, '— edges: solid success, dashed completion, dotted condition'));
    const timeline = el('div', { id: 'timeline' });
    const taskList = el('tbody');
    const panel = el('aside', { class: 'card', id: 'task-panel' }, el('p', { class: 'muted' }, 'Select a task in the graph to see its details and output.'));
    main.replaceChildren(
      head,
      el('div', { class: 'layout-2' },
        el('div', {},
          el('h2', {}, 'Graph'),
          el('section', { class: 'card' }, graph, legend),
          el('h2', {}, 'Timeline: attempts per device'),
          el('section', { class: 'card' }, timeline),
          el('h2', {}, 'Tasks'),
          el('table', { id: 'task-list' },
            el('thead', {}, el('tr', {}, ['Task', 'Status', 'Device', 'Attempts', 'Title'].map((h) => el('th', {}, h)))),
            taskList)),
        el('div', {}, el('h2', {}, 'Task'), panel)));

    const taskStatus = (t) => st.taskStatus.get(t.id) || t.status;
    const requestStatus = () => st.requestStatus || (st.view && st.view.status);
    const finished = () => TERMINAL_REQUEST.has(requestStatus());

    // Header: text, status, counts, cancel. Built once, then updated in place (so a click on
    // the cancel button is never lost to a redraw).
    const cancelButton = el('button', { id: 'cancel-request', class: 'danger', type: 'button', hidden: true }, 'Cancel request');
    cancelButton.addEventListener('click', async () => {
      cancelButton.disabled = true;
      try {
        await api('POST', `${path}/cancel`);
      } catch (e) {
        cancelButton.disabled = false;
        showBanner(`Cannot cancel: ${e.message}`);
      }
    });
    const headText = el('div', { class: 'text', id: 'request-text' });
    const headMeta = el('div', { class: 'meta' });
    let headBuilt = false;

    function renderHead() {
      const v = st.view;
      if (!v) return;
      const status = requestStatus();
      if (!headBuilt) {
        head.replaceChildren(el('div', { class: 'request-head' }, el('div', {}, headText, headMeta), cancelButton));
        headBuilt = true;
      }
      headText.textContent = v.text;
      const tasks = v.tasks.map((t) => ({ status: taskStatus(t) }));
      headMeta.replaceChildren();
      append(headMeta, [
        badge(status, 'request-status'),
        el('span', { class: 'mono', title: v.id }, v.id),
        el('span', {}, taskCounts(tasks)),
        el('span', {}, `graph version ${v.version}`),
        el('span', {}, `turns ${v.turns.used}/${v.turns.budget}`),
        el('span', { id: 'request-duration' }, requestDuration({ ...v, status })),
        v.error ? el('span', { class: 'error' }, `${v.error.code}: ${v.error.message}`) : null]);
      cancelButton.hidden = finished();
    }

    // The graph: geometry from the server (layout-rs), drawn here as SVG. Redrawn only when
    // the layout changes (a new graph version); otherwise nodes are updated in place.
    let drawnLayout = null;
    const nodeEls = new Map(); // task id -> { g, tip, device }

    function updateNode(t) {
      const n = nodeEls.get(t.id);
      if (!n) return;
      const status = taskStatus(t);
      if (n.g.getAttribute('data-status') !== status) n.g.setAttribute('data-status', status);
      n.tip.textContent = `${t.id}: ${t.title} (${status})`;
      n.device.textContent = t.device ? ` · ${t.device}` : '';
    }

    function renderGraph() {
      const v = st.view;
      const l = st.layout;
      if (!v || !l) return;
      if (l === drawnLayout) {
        v.tasks.forEach(updateNode);
        return;
      }
      drawnLayout = l;
      nodeEls.clear();
      if (!l.drawn) {
        graph.replaceChildren(el('p', { class: 'muted', id: 'graph-not-drawn' }, `Not drawn: ${l.reason}. The tasks are listed below.`));
        return;
      }
      const byId = new Map(v.tasks.map((t) => [t.id, t]));
      const root = svg('svg', { width: l.width, height: l.height, viewBox: `0 0 ${l.width} ${l.height}`, role: 'img', 'aria-label': 'Task graph' },
        svg('defs', {},
          svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' },
            svg('path', { d: 'M 0 0 L 10 5 L 0 10 z' }))));
      for (const e of l.edges) {
        root.append(svg('path', { class: 'edge', d: e.d, 'data-kind': e.kind, 'data-from': e.from, 'data-to': e.to, 'marker-end': 'url(#arrow)' },
          svg('title', {}, `${e.from} → ${e.to} (${e.kind})`)));
      }
      for (const n of l.nodes) {
        const t = byId.get(n.id);
        if (!t) continue;
        const title = t.title.length > 30 ? `${t.title.slice(0, 29)}…` : t.title;
        const tip = svg('title', {});
        const device = svg('tspan', {});
        const g = svg('g', { class: 'node', 'data-task-id': t.id, tabindex: 0 },
          tip,
          svg('rect', { x: n.x, y: n.y, width: n.w, height: n.h, rx: 6 }),
          svg('text', { class: 'id', x: n.x + 8, y: n.y + 16 }, t.id, device),
          svg('text', { class: 'title', x: n.x + 8, y: n.y + 34 }, title));
        if (st.selected === t.id) g.classList.add('selected');
        g.addEventListener('click', () => select(t.id));
        g.addEventListener('keydown', (ev) => {
          if (ev.key === 'Enter') select(t.id);
        });
        nodeEls.set(t.id, { g, tip, device });
        updateNode(t);
        root.append(g);
      }
      graph.replaceChildren(root);
    }

    // Recolours nodes from the event stream without redrawing.
    function paintStatuses() {
      for (const g of graph.querySelectorAll('g.node')) {
        const s = st.taskStatus.get(g.getAttribute('data-task-id'));
        if (s && g.getAttribute('data-status') !== s) g.setAttribute('data-status', s);
      }
      const rs = requestStatus();
      const badgeEl = document.getElementById('request-status');
      if (badgeEl && rs && badgeEl.getAttribute('data-status') !== rs) {
        badgeEl.setAttribute('data-status', rs);
        badgeEl.textContent = rs;
      }
    }

    // Gantt: one lane per device, one bar per attempt.
    function renderTimeline() {
      const v = st.view;
      if (!v) return;
      const attempts = [];
      for (const t of v.tasks) for (const a of t.attempts) attempts.push({ ...a, task: t.id });
      if (!attempts.length) {
        timeline.replaceChildren(el('p', { class: 'muted' }, 'No attempts yet.'));
        return;
      }
      const devices = [...new Set(attempts.map((a) => a.device))].sort();
      const now = Date.now();
      const t0 = v.created_at_ms;
      const ends = attempts.map((a) => a.ended_at_ms || now);
      const t1 = Math.max(t0 + 1000, finished() ? Math.max(...ends, v.updated_at_ms) : now);
      const width = Math.max(timeline.clientWidth || 800, 400);
      const labelW = 110;
      const laneH = 30;
      const top = 22;
      const plotW = width - labelW - 12;
      const x = (ms) => labelW + ((ms - t0) / (t1 - t0)) * plotW;
      const height = top + devices.length * laneH + 6;
      const root = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Timeline of attempts per device' });
      const span = t1 - t0;
      const step = [100, 250, 500, 1000, 2000, 5000, 10000, 15000, 30000, 60000, 120000, 300000, 600000, 1800000, 3600000]
        .find((s) => span / s <= 8) || 7200000;
      for (let ms = 0; ms <= span; ms += step) {
        root.append(svg('line', { class: 'grid', x1: x(t0 + ms), x2: x(t0 + ms), y1: top - 4, y2: height }),
          svg('text', { class: 'tick', x: Math.min(x(t0 + ms) + 2, width - 34), y: 12 }, fmtDuration(ms)));
      }
      devices.forEach((d, i) => {
        const y = top + i * laneH;
        root.append(svg('text', { class: 'lane-label', x: 4, y: y + laneH / 2 + 4 }, d),
          svg('line', { class: 'grid', x1: labelW, x2: width, y1: y + laneH, y2: y + laneH }));
      });
      for (const a of attempts) {
        const y = top + devices.indexOf(a.device) * laneH + 4;
        const bx = x(a.started_at_ms);
        const bw = Math.max(3, x(a.ended_at_ms || now) - bx);
        const g = svg('g', {},
          svg('rect', { class: 'bar', x: bx, y, width: bw, height: laneH - 8, rx: 3, 'data-attempt-id': a.id, 'data-task-id': a.task, 'data-status': a.status },
            svg('title', {}, `${a.task} on ${a.device}: ${a.status}, ${fmtDuration((a.ended_at_ms || now) - a.started_at_ms)}${a.error ? ` — ${a.error.code}: ${a.error.message}` : ''}`)),
          bw > 30 ? svg('text', { class: 'bar-label', x: bx + 4, y: y + laneH / 2 }, a.task) : null);
        g.addEventListener('click', () => select(a.task));
        root.append(g);
      }
      timeline.replaceChildren(root);
    }

    function renderTaskList() {
      const v = st.view;
      if (!v) return;
      taskList.replaceChildren(...v.tasks.map((t) => {
        const tr = el('tr', { class: 'clickable', 'data-task-id': t.id },
          el('td', { class: 'mono' }, t.id),
          el('td', {}, badge(taskStatus(t))),
          el('td', {}, t.device || ''),
          el('td', {}, String(t.attempts.length)),
          el('td', { class: 'text', title: t.title }, t.title));
        tr.addEventListener('click', () => select(t.id));
        return tr;
      }));
    }

    // Tasks that work in turns: an agent loop (no explicit action) or the `steps` executor.
    function turnBased(t) {
      return !t.action || t.action.kind === 'steps' || t.turns_used > 0;
    }

    function mainText(output) {
      const d = output.data;
      if (d && typeof d === 'object') {
        for (const k of ['stdout', 'body', 'content']) if (typeof d[k] === 'string') return d[k];
      }
      return output.summary || '';
    }

    // One output block, cut at PREVIEW_CHARS with a button to see all of it.
    function outputBlock(key, label, text) {
      const long = text.length > PREVIEW_CHARS;
      const whole = st.expanded.has(key);
      const pre = el('pre', { id: `output-${key}`, class: 'output', 'data-full-length': text.length },
        long && !whole ? `${text.slice(0, PREVIEW_CHARS)}…` : text);
      let more = null;
      if (long) {
        more = el('button', { class: 'link', type: 'button', id: `show-all-${key}` },
          whole ? 'Show less' : `Show all (${text.length.toLocaleString()} characters)`);
        more.addEventListener('click', () => {
          if (whole) st.expanded.delete(key);
          else st.expanded.add(key);
          renderPanel();
        });
      }
      return [el('div', { class: 'output-head' }, el('strong', {}, label), more), pre];
    }

    // The panel is rebuilt only when what it shows changed (so clicks on it are not lost).
    let panelKey = null;

    function renderPanel() {
      const v = st.view;
      if (!v || !st.selected) return;
      const t = v.tasks.find((x) => x.id === st.selected);
      const key = JSON.stringify([t, taskStatus(t || {}), finished(), [...st.expanded]]);
      if (key === panelKey) return;
      panelKey = key;
      if (!t) {
        panel.replaceChildren(el('p', { class: 'muted' }, `Task ${st.selected} is no longer in the graph.`));
        return;
      }
      const status = taskStatus(t);
      const rows = [
        ['Status', badge(status, 'task-status')],
        ['Instruction', t.instruction],
        ['Action', t.action ? JSON.stringify(t.action) : '(none: an agent decides)'],
        ['Device', t.device || '(not placed yet)'],
        ['Turns', el('span', { id: 'task-turns' }, turnBased(t) ? `${t.turns_used} used of ${t.max_turns}` : 'not turn-based (an explicit action)')],
        ['Retries', `up to ${t.retry.max_attempts} attempt${t.retry.max_attempts === 1 ? '' : 's'}`],
      ];
      if (t.error) rows.push(['Error', el('span', { class: 'error', id: 'task-error' }, `${t.error.code}: ${t.error.message}`)]);
      const attempts = t.attempts.length
        ? el('table', { id: 'task-attempts' },
          el('thead', {}, el('tr', {}, ['Attempt', 'Device', 'Status', 'Took', 'Error'].map((h) => el('th', {}, h)))),
          el('tbody', {}, t.attempts.map((a) => el('tr', { 'data-attempt-id': a.id },
            el('td', { class: 'mono', title: a.id }, shortId(a.id)),
            el('td', {}, a.device),
            el('td', {}, badge(a.status)),
            el('td', { title: fmtTime(a.started_at_ms) }, a.ended_at_ms ? fmtDuration(a.ended_at_ms - a.started_at_ms) : 'running'),
            el('td', { class: 'error' }, a.error ? `${a.error.code}: ${a.error.message}` : '',
              a.late_result ? ` (late result: ${a.late_result.status})` : '')))))
        : el('p', { class: 'muted' }, 'No attempts yet.');
      const output = [];
      if (t.output) {
        output.push(outputBlock('main', 'Output', mainText(t.output)));
        const d = t.output.data || {};
        if (typeof d.stderr === 'string' && d.stderr) output.push(outputBlock('stderr', 'stderr', d.stderr));
        if (d.exit_code !== undefined && d.exit_code !== null) output.push(el('p', { class: 'muted' }, `exit code ${d.exit_code}${d.truncated ? ' (output truncated by the agent)' : ''}`));
        if (t.output.summary && t.output.summary.trim() !== mainText(t.output).trim()) output.push(el('p', {}, el('strong', {}, 'Summary: '), t.output.summary));
      } else {
        output.push(el('p', { class: 'muted', id: 'no-output' }, TERMINAL_TASK.has(status) ? 'No output.' : 'No output yet.'));
      }
      // The files the task produced: size and a download link (none once retention deleted
      // their bytes).
      const files = (t.files || []).length
        ? el('table', { id: 'task-files' },
          el('thead', {}, el('tr', {}, ['File', 'Size', 'SHA-256'].map((h) => el('th', {}, h)))),
          el('tbody', {}, t.files.map((f) => el('tr', { 'data-file-name': f.name },
            el('td', {}, f.url
              ? el('a', { href: f.url, download: f.name.split('/').pop(), class: 'file-link' }, f.name)
              : el('span', { title: 'deleted by retention' }, `${f.name} (deleted)`)),
            el('td', { class: 'file-size', title: `${f.size} bytes` }, fmtSize(f.size)),
            el('td', { class: 'mono', title: f.sha256 }, f.sha256.slice(0, 12))))))
        : null;
      let cancel = null;
      if (!TERMINAL_TASK.has(status) && !finished()) {
        cancel = el('button', { class: 'danger', type: 'button', id: 'cancel-task' }, 'Cancel task');
        cancel.addEventListener('click', async () => {
          cancel.disabled = true;
          try {
            await api('POST', `${path}/tasks/${encodeURIComponent(t.id)}/cancel`);
          } catch (e) {
            cancel.disabled = false;
            showBanner(`Cannot cancel the task: ${e.message}`);
          }
        });
      }
      panel.replaceChildren(
        el('h3', { id: 'task-title' }, `${t.id}: ${t.title}`),
        el('dl', {}, rows.map(([k, val]) => [el('dt', {}, k), el('dd', {}, val)])),
        el('strong', {}, 'Attempts'), attempts,
        el('div', { id: 'task-output' }, output),
        el('div', { id: 'task-files-section' }, files ? [el('strong', {}, 'Files'), files] : null),
        el('div', { class: 'actions' }, cancel));
    }

    function select(taskId) {
      if (st.selected !== taskId) st.expanded.clear();
      st.selected = taskId;
      for (const g of graph.querySelectorAll('g.node')) {
        g.classList.toggle('selected', g.getAttribute('data-task-id') === taskId);
      }
      renderPanel();
    }

    function renderAll() {
      renderHead();
      renderGraph();
      renderTimeline();
      renderTaskList();
      renderPanel();
    }

    // Re-reads the view (and the layout when the graph changed) after events: at most one
    // read in flight, and one more if events came in meanwhile.
    let reading = false;
    let again = false;
    let timer = null;
    async function refresh() {
      if (reading) {
        again = true;
        return;
      }
      reading = true;
      try {
        const view = await api('GET', path);
        if (!scope.alive) return;
        let layout = st.layout;
        if (!layout || layout.version !== view.version) layout = await api('GET', `${path}/layout`);
        if (!scope.alive) return;
        st.view = view;
        st.layout = layout;
        renderAll();
      } catch (e) {
        if (e.status === 404) main.replaceChildren(el('p', { class: 'error' }, `No request with id ${id}.`));
      } finally {
        reading = false;
        if (again && scope.alive) {
          again = false;
          soon();
        }
      }
    }
    function soon() {
      if (timer) return;
      timer = setTimeout(() => {
        timer = null;
        refresh();
      }, 150);
    }

    const es = scope.source(`${path}/events`, {
      task_status: (ev) => {
        st.taskStatus.set(ev.task_id, ev.status);
        paintStatuses();
        soon();
      },
      request_status: (ev) => {
        st.requestStatus = ev.status;
        paintStatuses();
        // The stream ends after the final status; do not let EventSource reconnect.
        if (TERMINAL_REQUEST.has(ev.status)) closeSource(es);
        soon();
      },
      graph_edited: () => soon(),
      task_retrying: () => soon(),
      task_progress: () => soon(),
      turns_extended: () => soon(),
      files_deleted: () => soon(),
    });

    refresh();
    scope.every(1000, () => {
      if (!st.view || finished()) return;
      renderTimeline();
      const d = document.getElementById('request-duration');
      if (d) d.textContent = requestDuration({ ...st.view, status: requestStatus() });
    });
    return scope;
  }

  // ---- devices -----------------------------------------------------------------------------

  function devicesPage() {
    const scope = new Scope();
    const devices = new Map();
    const tbody = el('tbody');
    const empty = el('p', { class: 'muted', hidden: true, id: 'no-devices' }, 'No devices registered. Add one with `weft device add NAME --kind KIND`.');
    main.replaceChildren(
      el('h1', {}, 'Devices'),
      el('table', { id: 'devices' },
        el('thead', {}, el('tr', {}, ['Name', 'Kind', 'Platform', 'Status', 'Capabilities', 'Running', 'Last seen', ''].map((h) => el('th', {}, h)))),
        tbody),
      empty);

    function row(d) {
      const action = d.status === 'draining' ? 'resume' : 'drain';
      const btn = el('button', { type: 'button', class: 'quiet', 'data-action': action, hidden: d.status === 'offline' && action === 'drain' },
        action === 'drain' ? 'Drain' : 'Resume');
      btn.addEventListener('click', async () => {
        btn.disabled = true;
        try {
          await api('POST', `/v1/devices/${encodeURIComponent(d.name)}/${action}`);
        } catch (e) {
          btn.disabled = false;
          showBanner(`Cannot ${action} ${d.name}: ${e.message}`);
        }
      });
      return el('tr', { 'data-device': d.name, 'data-status': d.status },
        el('td', {}, el('strong', {}, d.name)),
        el('td', {}, d.kind),
        el('td', { class: 'mono' }, d.platform || '—', d.os_version ? ` (${d.os_version})` : ''),
        el('td', {}, badge(d.status)),
        el('td', {}, (d.capabilities || []).join(', ') || '—'),
        el('td', {}, `${d.running} / ${d.max_concurrency}`),
        el('td', { title: d.last_seen_ms ? new Date(d.last_seen_ms).toLocaleString() : '' },
          d.status === 'offline' ? fmtAgo(d.last_seen_ms) : 'connected'),
        el('td', {}, btn));
    }

    function render() {
      const names = [...devices.keys()].sort();
      tbody.replaceChildren(...names.map((n) => row(devices.get(n))));
      empty.hidden = names.length > 0;
    }

    scope.source('/v1/devices/events', {
      devices: (list) => {
        devices.clear();
        for (const d of list) devices.set(d.name, d);
        render();
      },
      device: (d) => {
        if (d.status === 'removed') devices.delete(d.name);
        else devices.set(d.name, d);
        render();
      },
    });
    scope.every(5000, render);
    return scope;
  }

  // ---- routing -----------------------------------------------------------------------------

  let current = null;
  function route() {
    if (current) current.dispose();
    showBanner('');
    const hash = location.hash || '#/';
    const m = hash.match(/^#\/requests\/([^/]+)$/);
    document.getElementById('nav-requests').classList.toggle('active', hash === '#/' || !!m);
    document.getElementById('nav-devices').classList.toggle('active', hash === '#/devices');
    if (m) current = requestPage(decodeURIComponent(m[1]));
    else if (hash === '#/devices') current = devicesPage();
    else current = requestsPage();
  }

  document.getElementById('logout').addEventListener('click', async () => {
    try {
      await api('POST', '/v1/ui/logout');
    } finally {
      location.replace('/');
    }
  });
  window.addEventListener('hashchange', route);
  route();
})();
