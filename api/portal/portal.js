// webhookd portal: an account's event log over the delivery API (contract §10).
// The token arrives in the fragment (#token=…), which no request carries; it is kept in
// this tab's sessionStorage and sent only as an Authorization header, never in a URL.
'use strict';

const state = { token: '', cursor: null, filters: {}, hooks: new Map() };
const $ = (sel, root = document) => root.querySelector(sel);

// el builds an element; strings become text, never markup.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function takeToken() {
  const m = /(?:^|&)token=([^&]+)/.exec(location.hash.slice(1));
  if (m) {
    state.token = decodeURIComponent(m[1]);
    sessionStorage.setItem('webhookd.token', state.token);
    history.replaceState(null, '', location.pathname + location.search);
  } else {
    state.token = sessionStorage.getItem('webhookd.token') || '';
  }
}

// claims reads the token's payload to greet the account; the server is what checks it.
function claims() {
  try {
    const part = state.token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part));
  } catch (e) {
    return {};
  }
}

async function api(method, path, body) {
  const opts = {
    method, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer',
    headers: { Authorization: 'Bearer ' + state.token, Accept: 'application/json' },
  };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(new URL('../v1/' + path, location.href), opts);
  let data = null;
  try { data = await res.json(); } catch (e) { /* an answer without a body */ }
  if (!res.ok) {
    const err = new Error((data && data.error) || res.status + ' ' + res.statusText);
    err.status = res.status;
    throw err;
  }
  return data;
}

function say(text) { $('#notice').textContent = text; }

function problem(err) {
  const p = $('#problem');
  if (!err) { p.hidden = true; p.textContent = ''; return; }
  let text = err.message || String(err);
  if (err.status === 401) text = 'This link’s token is missing, expired or not valid: ' + text + '. Ask for a new link.';
  if (err.status === 403) text = 'This link may only look, not change anything: ' + text + '.';
  p.textContent = text;
  p.hidden = false;
}

function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return el('time', { datetime: iso, title: iso }, d.toLocaleString());
}

const badge = (word, cls = word) => el('span', { class: 'badge ' + cls }, word);
const short = (id) => id.length > 12 ? id.slice(0, 12) + '…' : id;

function answer(code, error) {
  if (code) return error ? code + ' · ' + error : String(code);
  return error || '—';
}

// --- webhooks ------------------------------------------------------------------------

async function loadWebhooks() {
  const body = $('#webhooks tbody');
  const select = $('#filters [name=webhook_id]');
  const hooks = [];
  let cursor = null;
  do {
    const page = await api('GET', 'webhooks?limit=100' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
    hooks.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  const details = await Promise.all(hooks.map((h) => api('GET', 'webhooks/' + h.id)));
  body.replaceChildren();
  select.replaceChildren(el('option', { value: '' }, 'All'));
  state.hooks.clear();
  for (const h of details) {
    state.hooks.set(h.id, h);
    body.append(webhookRow(h));
    select.append(el('option', { value: h.id }, '#' + h.id + ' ' + h.event));
  }
  if (state.filters.webhook_id) select.value = state.filters.webhook_id;
  $('#webhooks-empty').hidden = details.length > 0;
}

function webhookRow(h) {
  const s = h.stats;
  const health = [h.enabled ? badge('enabled') : badge('disabled')];
  if (h.circuit === 'open') health.push(' ', badge('circuit open', 'open'));
  if (!h.enabled && h.disabled_reason) health.push(el('div', { class: 'sub' }, h.disabled_reason));
  if (h.consecutive_failures > 0) health.push(el('div', { class: 'sub' }, h.consecutive_failures + ' failed in a row'));
  const f = s.last_failure;
  const actions = [
    el('button', { type: 'button', class: 'quiet', onclick: () => showWebhook(h.id) }, 'Deliveries'),
    el('button', { type: 'button', 'aria-label': 'Retry all failed deliveries of webhook ' + h.id, onclick: () => retryFailed(h) }, 'Retry all failed'),
  ];
  if (!h.enabled) actions.push(el('button', { type: 'button', onclick: () => enable(h) }, 'Enable'));
  return el('tr', { 'data-webhook': h.id },
    el('td', { 'data-label': 'Webhook' }, el('strong', {}, '#' + h.id + ' ' + h.event),
      el('div', { class: 'url' }, h.url), el('div', { class: 'sub' }, h.format + (h.project_id ? ' · project ' + h.project_id : ''))),
    el('td', { 'data-label': 'Health' }, health),
    el('td', { 'data-label': 'Last 24 h' },
      el('span', { class: 'count' }, s.succeeded + ' succeeded'), el('span', { class: 'count' }, s.failed + ' failed'),
      el('span', { class: 'count' }, s.pending + ' pending')),
    el('td', { 'data-label': 'Last failure' }, f ? [when(f.at), el('div', { class: 'sub' }, answer(f.status_code, f.error))] : '—'),
    el('td', { class: 'actions' }, actions));
}

function showWebhook(id) {
  const form = $('#filters');
  for (const input of form.elements) if (input.name) input.value = '';
  form.elements.webhook_id.value = id;
  form.requestSubmit();
  $('#deliveries-h').focus();
}

// ask opens the confirmation dialog and resolves true when confirmed.
function ask(title, text, okText, extra) {
  const dialog = $('#confirm');
  $('#confirm-h').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okText;
  $('#confirm-extra').replaceChildren(...(extra ? [extra] : []));
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true }));
}

async function retryFailed(h) {
  problem(null);
  try {
    const dry = await api('POST', 'deliveries/retry', { webhook_id: h.id, status: 'failed', dry_run: true });
    if (dry.count === 0) { say('Webhook #' + h.id + ' has no failed deliveries to retry.'); return; }
    const n = dry.count + (dry.count === 1 ? ' failed delivery' : ' failed deliveries');
    if (!await ask('Retry failed deliveries', 'Send ' + n + ' to ' + h.url + ' again?', 'Retry ' + n)) return;
    const done = await api('POST', 'deliveries/retry', { webhook_id: h.id, status: 'failed' });
    say(done.count + ' deliveries of webhook #' + h.id + ' queued for another attempt.');
  } catch (err) { problem(err); }
}

async function enable(h) {
  problem(null);
  const since = new Date(Date.now() - 24 * 3600e3);
  const box = el('input', { type: 'checkbox', id: 'replay', checked: true });
  const at = el('input', { type: 'datetime-local', step: '1', value: localInput(since), 'aria-label': 'Replay events since' });
  const extra = el('div', {}, el('label', { for: 'replay' }, box, 'Also send the events it missed since'), at);
  if (!await ask('Enable webhook #' + h.id, 'Deliveries to ' + h.url + ' start again.', 'Enable', extra)) return;
  try {
    const body = box.checked && at.value ? { replay_since: new Date(at.value).toISOString() } : {};
    const res = await api('POST', 'webhooks/' + h.id + '/enable', body);
    say('Webhook #' + h.id + ' enabled; ' + res.replayed + ' missed events sent again.');
    await loadWebhooks();
  } catch (err) { problem(err); }
}

function localInput(d) {
  const p = (n) => String(n).padStart(2, '0');
  return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
}

// --- deliveries ----------------------------------------------------------------------

function readFilters() {
  const f = {};
  for (const input of $('#filters').elements) {
    if (!input.name || !input.value.trim()) continue;
    f[input.name] = input.type === 'datetime-local' ? new Date(input.value).toISOString() : input.value.trim();
  }
  return f;
}

async function loadDeliveries(more) {
  const q = new URLSearchParams(state.filters);
  q.set('limit', '50');
  if (more && state.cursor) q.set('cursor', state.cursor);
  const page = await api('GET', 'deliveries?' + q);
  const body = $('#deliveries tbody');
  if (!more) body.replaceChildren();
  for (const d of page.data) body.append(deliveryRow(d));
  state.cursor = page.next_cursor;
  $('#more').hidden = !state.cursor;
  $('#deliveries-empty').hidden = body.children.length > 0;
}

function deliveryRow(d) {
  const open = el('button', { type: 'button', class: 'quiet', 'aria-expanded': 'false', onclick: (e) => toggle(d.id, e.currentTarget) }, 'Attempts');
  const retry = el('button', { type: 'button', onclick: (e) => retryOne(d.id, e.currentTarget) }, 'Retry');
  const hook = state.hooks.get(d.webhook_id);
  return el('tr', { 'data-delivery': d.id, 'data-status': d.status, 'data-webhook': d.webhook_id },
    el('td', { 'data-label': 'Created' }, when(d.created_at)),
    el('td', { 'data-label': 'Event' }, d.event, el('div', { class: 'sub mono', title: d.event_id }, short(d.event_id))),
    el('td', { 'data-label': 'Webhook' }, '#' + d.webhook_id, hook ? el('div', { class: 'url' }, hook.url) : null),
    el('td', { 'data-label': 'Status', class: 'status' }, badge(d.status)),
    el('td', { 'data-label': 'Attempts' }, String(d.attempts)),
    el('td', { 'data-label': 'Last answer' }, answer(d.last_status_code, d.last_error)),
    el('td', { class: 'actions' }, open, retry));
}

function rowOf(id) { return document.querySelector('tr[data-delivery="' + CSS.escape(id) + '"]'); }

async function toggle(id, button) {
  const row = rowOf(id);
  const next = row.nextElementSibling;
  if (next && next.classList.contains('detail-row')) { closeDetail(row, button); return; }
  problem(null);
  try {
    const d = await api('GET', 'deliveries/' + encodeURIComponent(id));
    row.replaceWith(refreshRow(row, d));
    showDetail(rowOf(id), d);
  } catch (err) { problem(err); }
}

function closeDetail(row, button) {
  const next = row.nextElementSibling;
  if (next && next.classList.contains('detail-row')) next.remove();
  row.classList.remove('open');
  const b = button || $('td.actions button[aria-expanded]', row);
  b.setAttribute('aria-expanded', 'false');
  b.focus();
}

// refreshRow is the list row for delivery d, shown as it is now.
function refreshRow(row, d) {
  const fresh = deliveryRow({ ...d, attempts: d.attempts.length ? d.attempts[d.attempts.length - 1].attempt : 0 });
  if (row.classList.contains('open')) fresh.classList.add('open');
  return fresh;
}

function showDetail(row, d) {
  const old = row.nextElementSibling;
  if (old && old.classList.contains('detail-row')) old.remove();
  const box = $('#detail-tpl').content.firstElementChild.cloneNode(true);
  box.id = 'detail-' + d.id;
  $('h3', box).textContent = 'Delivery ' + d.id;
  const facts = $('.facts', box);
  const fact = (k, v) => facts.append(el('dt', {}, k), el('dd', {}, v));
  fact('Status', badge(d.status));
  fact('Event', d.event + ' · ' + d.event_id);
  fact('Webhook', '#' + d.webhook_id);
  fact('Created', when(d.created_at));
  fact('Updated', when(d.updated_at));
  const tbody = $('.attempts tbody', box);
  for (const a of d.attempts) {
    tbody.append(el('tr', {},
      el('td', { 'data-label': 'Attempt' }, String(a.attempt)),
      el('td', { 'data-label': 'Started' }, when(a.started_at)),
      el('td', { 'data-label': 'Took' }, a.duration_ms.toFixed(1) + ' ms'),
      el('td', { 'data-label': 'Answer', class: 'answer' }, a.status_code ? String(a.status_code) : '—'),
      el('td', { 'data-label': 'Error' }, a.error || '—'),
      el('td', { 'data-label': 'Response body' }, a.response_body ? el('pre', {}, a.response_body) : '—')));
  }
  $('.attempts', box).hidden = d.attempts.length === 0;
  $('.no-attempts', box).hidden = d.attempts.length > 0;
  const r = d.request;
  if (r) {
    $('.request-h', box).textContent = d.attempts.length ? 'What attempt ' + r.attempt + ' sent' : 'What the first attempt will send';
    const lines = [r.method + ' ' + r.url];
    for (const [k, v] of Object.entries(r.headers)) lines.push(k + ': ' + v);
    $('.request', box).textContent = lines.join('\n') + '\n\n' + r.body;
  } else {
    $('.request-h', box).textContent = 'Request';
    $('.request', box).textContent = 'Not available: the webhook was deleted or the event is no longer stored.';
  }
  const opener = $('td.actions button[aria-expanded]', row);
  $('.retry', box).addEventListener('click', (e) => retryOne(d.id, e.currentTarget));
  $('.close', box).addEventListener('click', () => closeDetail(rowOf(d.id)));
  box.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeDetail(rowOf(d.id)); });
  const cell = el('td', { colspan: '7' }, box);
  row.after(el('tr', { class: 'detail-row' }, cell));
  row.classList.add('open');
  opener.setAttribute('aria-expanded', 'true');
  opener.setAttribute('aria-controls', box.id);
  $('h3', box).focus();
}

// retryOne queues a redelivery, then follows the delivery until its new attempt is logged.
async function retryOne(id, button) {
  problem(null);
  button.disabled = true;
  try {
    const before = await api('GET', 'deliveries/' + encodeURIComponent(id));
    const made = before.attempts.length ? before.attempts[before.attempts.length - 1].attempt : 0;
    await api('POST', 'deliveries/' + encodeURIComponent(id) + '/retry');
    say('Retry of ' + short(id) + ' queued; waiting for the attempt…');
    const deadline = Date.now() + 60e3;
    let d = before;
    let attempted = false;
    while (!attempted && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      d = await api('GET', 'deliveries/' + encodeURIComponent(id));
      attempted = (d.attempts.length ? d.attempts[d.attempts.length - 1].attempt : 0) > made;
    }
    const row = rowOf(id);
    if (row) {
      const wasOpen = row.classList.contains('open');
      row.replaceWith(refreshRow(row, d));
      if (wasOpen) showDetail(rowOf(id), d);
    }
    const outcome = { succeeded: 'succeeded', failed: 'failed again', pending: 'failed; another attempt is scheduled' }[d.status];
    say('Delivery ' + short(id) + (attempted ? ' ' + outcome + '.' : ': the retry is queued but not attempted yet.'));
    loadWebhooks().catch(problem);
  } catch (err) {
    problem(err);
  } finally {
    button.disabled = false;
  }
}

// --- start ---------------------------------------------------------------------------

async function start() {
  takeToken();
  if (!state.token) {
    problem(new Error('Open this page with a link that carries a token: /portal/#token=…'));
    return;
  }
  const c = claims();
  const until = c.exp ? ' · link valid until ' + new Date(c.exp * 1000).toLocaleString() : '';
  const scope = (c.scope || 'read').split(' ').includes('write') ? '' : ' · view only';
  $('#who').textContent = 'Account ' + (c.sub || '?') + until + scope;
  $('#filters').addEventListener('submit', (e) => {
    e.preventDefault();
    state.filters = readFilters();
    problem(null);
    loadDeliveries(false).catch(problem);
  });
  $('#filters').addEventListener('reset', () => {
    state.filters = {};
    setTimeout(() => loadDeliveries(false).catch(problem));
  });
  $('#more').addEventListener('click', () => loadDeliveries(true).catch(problem));
  say('Loading…');
  try {
    await loadWebhooks();
    await loadDeliveries(false);
    say('');
  } catch (err) {
    say('');
    problem(err);
  }
}

window.addEventListener('hashchange', () => location.reload());
document.addEventListener('DOMContentLoaded', start);
