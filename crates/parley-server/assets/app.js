// Parley dashboard behaviour: the sliding conversation panel, tabs, older messages, keyboard
// shortcuts and small conveniences. Plain JavaScript, no dependencies. Every feature here is an
// enhancement: without it the same links and forms work as full page loads.
'use strict';
(function () {
  const doc = document;
  const $ = (sel, root) => (root || doc).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || doc).querySelectorAll(sel));
  const panel = $('#panel');
  const scrim = $('#scrim');
  const progress = $('#progress');
  const toast = $('#toast');

  // The server renders times in the viewer's UTC offset, which it learns from this cookie.
  const offset = String(-new Date().getTimezoneOffset());
  if (doc.body.dataset.tz !== undefined && doc.body.dataset.tz !== offset) {
    doc.cookie = 'parley_tz=' + offset + '; path=/; max-age=31536000; SameSite=Lax';
    if (!sessionStorage.getItem('parley-tz')) {
      sessionStorage.setItem('parley-tz', '1');
      location.reload();
      return;
    }
  }

  const busy = (on) => progress && progress.classList.toggle('on', on);
  function notify(text) {
    if (!toast) return;
    toast.textContent = text;
    toast.classList.add('on');
    setTimeout(() => toast.classList.remove('on'), 4000);
  }

  async function fetchHtml(url) {
    busy(true);
    try {
      const res = await fetch(url, { credentials: 'same-origin', headers: { 'X-Requested-With': 'fetch' } });
      if (res.redirected && new URL(res.url).pathname === '/login') {
        location.href = res.url;
        throw new Error('signed out');
      }
      if (!res.ok) throw new Error('HTTP ' + res.status);
      return await res.text();
    } finally {
      busy(false);
    }
  }

  const query = () => new URLSearchParams(location.search);
  const hrefOf = (params) => location.pathname + (params.toString() ? '?' + params : '');

  function markSelected(id) {
    $$('tr.row').forEach((r) => r.classList.toggle('selected', r.dataset.id === id));
  }

  async function openPanel(href, push) {
    if (!panel) return;
    const url = new URL(href, location.href);
    const id = url.searchParams.get('open');
    if (!id) return;
    markSelected(id);
    panel.classList.add('open', 'loading');
    scrim.classList.add('open');
    const params = new URLSearchParams(url.search);
    params.delete('open');
    params.delete('notice');
    try {
      const html = await fetchHtml('/conversations/' + encodeURIComponent(id) + '/panel?' + params);
      panel.innerHTML = html;
      if (push) history.pushState({ open: id }, '', url.pathname + url.search);
      wirePanel();
      panel.focus({ preventScroll: true });
    } catch (err) {
      panel.innerHTML = '<div class="panel-error"><p>Could not load this conversation.</p><button class="btn" type="button" id="panel-retry">Try again</button></div>';
      $('#panel-retry').addEventListener('click', () => openPanel(href, push));
    } finally {
      panel.classList.remove('loading');
    }
  }

  function closePanel(push) {
    if (!panel || !panel.classList.contains('open')) return;
    panel.classList.remove('open');
    scrim.classList.remove('open');
    markSelected(null);
    if (push) {
      const p = query();
      ['open', 'tab', 'tpage', 'notice'].forEach((k) => p.delete(k));
      history.pushState({}, '', hrefOf(p));
    }
  }

  function showTab(name) {
    $$('.tab-link', panel).forEach((a) => {
      const on = a.dataset.tab === name;
      a.classList.toggle('active', on);
      a.setAttribute('aria-selected', on ? 'true' : 'false');
    });
    $$('.tab-pane', panel).forEach((pane) => { pane.hidden = pane.dataset.pane !== name; });
    const p = query();
    if (name === 'overview') p.delete('tab'); else p.set('tab', name);
    history.replaceState(history.state, '', hrefOf(p));
    if (name === 'transcript') {
      const pane = $('[data-pane="transcript"]', panel);
      if (pane && !pane.dataset.scrolled) {
        pane.scrollTop = pane.scrollHeight;
        pane.dataset.scrolled = '1';
      }
    }
  }

  function wireOlder() {
    const button = $('#load-older', panel);
    if (!button) return;
    button.addEventListener('click', async (ev) => {
      if (ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
      ev.preventDefault();
      const pane = $('[data-pane="transcript"]', panel);
      const fromBottom = pane.scrollHeight - pane.scrollTop;
      button.textContent = 'Loading…';
      try {
        const html = await fetchHtml(button.dataset.fragment);
        button.insertAdjacentHTML('afterend', html);
        button.remove();
        pane.scrollTop = pane.scrollHeight - fromBottom;
        wireOlder();
      } catch (err) {
        button.textContent = 'Load older messages';
        notify('Could not load older messages.');
      }
    });
  }

  function wirePanel() {
    if (!panel) return;
    panel.tabIndex = -1;
    $$('.tab-link', panel).forEach((a) => a.addEventListener('click', (ev) => {
      if (ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
      ev.preventDefault();
      showTab(a.dataset.tab);
    }));
    const close = $('#panel-close', panel);
    if (close) close.addEventListener('click', (ev) => { ev.preventDefault(); closePanel(true); });
    $$('[data-open-dialog]', panel).forEach((b) => b.addEventListener('click', () => {
      const dialog = doc.getElementById(b.dataset.openDialog);
      if (dialog) dialog.showModal();
    }));
    $$('form', panel).forEach((f) => f.addEventListener('submit', (ev) => {
      if (ev.submitter && ev.submitter.getAttribute('formmethod') === 'dialog') return;
      busy(true);
    }));
    wireOlder();
    wireTeam();
    const active = $('.tab-link.active', panel);
    if (active && active.dataset.tab === 'transcript') showTab('transcript');
  }

  // The team's actions (issue 14): JSON requests with the session's CSRF token; the live
  // stream then refreshes the panel and the list.
  async function teamPost(path, body) {
    const bar = $('#team-bar', panel);
    const inner = $('.panel-inner', panel);
    if (!bar || !inner) return null;
    busy(true);
    try {
      const res = await fetch('/conversations/' + encodeURIComponent(inner.dataset.id) + '/' + path, {
        method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': bar.dataset.csrf },
        body: JSON.stringify(body || {}),
      });
      const data = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error((data.error && data.error.message) || ('HTTP ' + res.status));
      return data;
    } finally {
      busy(false);
    }
  }
  const teamRefresh = () => { const i = $('.panel-inner', panel); if (i && window.parleyRefreshPanel) window.parleyRefreshPanel(i.dataset.id); };

  function wireTeam() {
    $$('[data-team]', panel).forEach((b) => b.addEventListener('click', async () => {
      try { await teamPost(b.dataset.team); teamRefresh(); } catch (e) { notify(e.message); }
    }));
    $$('[data-team-status]', panel).forEach((b) => b.addEventListener('click', async () => {
      try { await teamPost('status', { status: b.dataset.teamStatus }); teamRefresh(); } catch (e) { notify(e.message); }
    }));
    const confirmClose = $('#confirm-close', panel);
    if (confirmClose) confirmClose.addEventListener('click', async () => {
      const reason = $('#end-reason', panel).value;
      $('#close-dialog', panel).close();
      try { await teamPost('status', { status: 'closed', end_reason: reason }); teamRefresh(); } catch (e) { notify(e.message); }
    });
    const assignee = $('[data-team-assign]', panel);
    if (assignee) assignee.addEventListener('change', async () => {
      try { await teamPost('assign', { assignee_id: assignee.value || null }); notify('Assigned.'); } catch (e) { notify(e.message); }
    });
    const form = $('#composer', panel);
    if (form) {
      const text = $('#composer-text', form);
      const error = $('#composer-error', form);
      const send = async () => {
        const value = text.value.trim();
        if (!value) return;
        error.textContent = '';
        text.disabled = true;
        try {
          const tag = $('#message-tag', form);
          await teamPost('reply', tag && tag.value ? { text: value, message_tag: tag.value } : { text: value });
          text.value = '';
          sessionStorage.removeItem('parley-draft-' + form.dataset.id);
          teamRefresh();
        } catch (e) {
          error.textContent = e.message;
        } finally {
          text.disabled = false;
          text.focus();
        }
      };
      form.addEventListener('submit', (ev) => { ev.preventDefault(); send(); });
      text.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); send(); }
      });
      text.addEventListener('input', () => sessionStorage.setItem('parley-draft-' + form.dataset.id, text.value));
      const draft = sessionStorage.getItem('parley-draft-' + form.dataset.id);
      if (draft) text.value = draft;
    }
    const tform = $('#template-form', panel);
    if (tform) wireTemplates(tform);
  }

  // The WhatsApp template picker: the number's approved templates, one input per parameter.
  async function wireTemplates(tform) {
    const pick = $('#template-pick', tform);
    const body = $('#template-body', tform);
    const params = $('#template-params', tform);
    const error = $('#composer-error', tform);
    let list = [];
    try {
      const res = await fetch('/conversations/' + encodeURIComponent(tform.dataset.id) + '/templates', { credentials: 'same-origin' });
      const data = await res.json();
      if (!res.ok) throw new Error((data.error && data.error.message) || ('HTTP ' + res.status));
      list = data.templates;
    } catch (e) {
      pick.innerHTML = '';
      error.textContent = 'Could not load the templates: ' + e.message;
      return;
    }
    pick.innerHTML = '';
    const none = doc.createElement('option');
    none.value = ''; none.textContent = list.length ? 'Choose a template' : 'No approved templates';
    pick.appendChild(none);
    list.forEach((t, i) => {
      const o = doc.createElement('option');
      o.value = String(i); o.textContent = t.name + ' (' + t.language + ')';
      pick.appendChild(o);
    });
    const show = () => {
      const t = list[Number(pick.value)];
      params.innerHTML = '';
      body.textContent = t && pick.value !== '' ? t.body : '';
      if (!t || pick.value === '') return;
      for (let n = 1; n <= t.parameters; n++) {
        const label = doc.createElement('label');
        label.textContent = '{{' + n + '}} ';
        const input = doc.createElement('input');
        input.type = 'text'; input.required = true; input.className = 'template-param'; input.maxLength = 1024;
        label.appendChild(input);
        params.appendChild(label);
      }
    };
    pick.addEventListener('change', show);
    tform.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const t = list[Number(pick.value)];
      if (!t || pick.value === '') return;
      const values = $$('.template-param', params).map((i) => i.value);
      error.textContent = '';
      try {
        await teamPost('reply', { template: { name: t.name, language: t.language, parameters: values } });
        teamRefresh();
      } catch (e) { error.textContent = e.message; }
    });
  }

  // The tab title counts the conversations that need a human.
  const attention = $('#attention-count');
  const baseTitle = doc.title;
  function titleCount() {
    const n = attention ? Number(attention.dataset.count || '0') : 0;
    doc.title = n > 0 ? '(' + n + ') ' + baseTitle : baseTitle;
  }
  titleCount();

  // Rows open the panel in place; a modified click still opens a new tab through the link.
  const table = $('#conversations');
  if (table) {
    table.addEventListener('click', (ev) => {
      const row = ev.target.closest('tr.row');
      if (!row || ev.target.closest('.c-select, .c-menu')) return;
      if (ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.button !== 0) return;
      ev.preventDefault();
      focusRow(row);
      openPanel(row.dataset.href, true);
    });
  }
  // Bulk actions (issue 14): a checkbox per row (Shift-click selects the range from the last
  // one clicked), the header's selects the page, "Select all N matching" the whole view. The
  // selection survives the live list's refreshes. Large selections run as a job on the server;
  // the bar shows its progress.
  const bulkBar = $('#bulk-bar');
  if (table && bulkBar) {
    const selected = new Set();
    const csrfToken = $('meta[name=csrf-token]').content;
    const matchCount = Number(bulkBar.dataset.match || '0');
    const progressBox = $('#bulk-progress');
    let allMatching = false;
    let anchor = null;
    let closeTarget = null;
    const checks = () => $$('.row-check', table);
    const chosen = () => (allMatching ? matchCount : selected.size);
    const plural = (n) => n.toLocaleString() + (n === 1 ? ' conversation' : ' conversations');
    function syncBulk() {
      const page = checks();
      page.forEach((c) => {
        c.checked = allMatching || selected.has(c.value);
        c.closest('tr').classList.toggle('checked', c.checked);
      });
      const n = chosen();
      bulkBar.hidden = n === 0 && progressBox.hidden;
      $('#bulk-count').textContent = allMatching ? 'All ' + plural(n) + ' matching this view selected' : n.toLocaleString() + ' selected';
      const head = $('#select-page');
      const all = page.length > 0 && page.every((c) => c.checked);
      if (head) {
        head.checked = all;
        head.indeterminate = !all && page.some((c) => c.checked);
      }
      $('#bulk-all').hidden = allMatching || !all || matchCount <= page.length;
    }
    window.parleyBulkSync = syncBulk;
    table.addEventListener('click', (ev) => {
      const c = ev.target.closest('.row-check');
      if (!c) return;
      const page = checks();
      if (allMatching) {
        allMatching = false;
        page.forEach((x) => selected.add(x.value));
      }
      const to = page.indexOf(c);
      const from = page.findIndex((x) => x.value === anchor);
      if (ev.shiftKey && from >= 0 && to >= 0) {
        const [lo, hi] = from < to ? [from, to] : [to, from];
        for (let i = lo; i <= hi; i++) {
          if (c.checked) selected.add(page[i].value); else selected.delete(page[i].value);
        }
      } else if (c.checked) selected.add(c.value); else selected.delete(c.value);
      anchor = c.value;
      syncBulk();
    });
    table.addEventListener('change', (ev) => {
      if (ev.target.id !== 'select-page') return;
      allMatching = false;
      checks().forEach((c) => { if (ev.target.checked) selected.add(c.value); else selected.delete(c.value); });
      syncBulk();
    });
    $('#bulk-all').addEventListener('click', () => { allMatching = true; syncBulk(); });
    const clearBulk = () => { selected.clear(); allMatching = false; anchor = null; syncBulk(); };
    $('#bulk-clear').addEventListener('click', clearBulk);

    const refresh = () => { if (window.parleyRefreshList) window.parleyRefreshList(); };
    async function postJson(url, body, key) {
      const headers = { 'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken };
      if (key) headers['Idempotency-Key'] = key;
      const res = await fetch(url, { method: 'POST', credentials: 'same-origin', headers, body: JSON.stringify(body) });
      const data = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error((data.error && data.error.message) || ('HTTP ' + res.status));
      return { status: res.status, data };
    }
    const verbs = { close: 'Closed', archive: 'Archived', reopen: 'Reopened', assign: 'Assigned', delete: 'Deleted' };
    function showProgress(b) {
      progressBox.hidden = false;
      bulkBar.hidden = false;
      const pct = b.total > 0 ? Math.round((100 * b.done) / b.total) : 100;
      $('#bulk-progress-bar').value = pct;
      $('#bulk-progress-label').textContent = b.state === 'done'
        ? (verbs[b.action] || 'Done') + ' ' + plural(b.affected) + '.'
        : b.state === 'failed' ? 'Stopped: ' + (b.error || 'an error') + ' (' + b.done.toLocaleString() + ' done)'
          : b.done.toLocaleString() + ' of ' + plural(b.total) + '…';
    }
    async function runBulk(body) {
      const payload = Object.assign({}, body);
      if (allMatching) {
        const p = query();
        ['open', 'notice', 'after', 'before', 'tab', 'tpage'].forEach((k) => p.delete(k));
        payload.view = p.toString();
      } else {
        payload.ids = Array.from(selected);
      }
      const key = 'bulk-' + Date.now().toString(36) + '-' + Math.random().toString(36).slice(2);
      busy(true);
      let b;
      try {
        b = (await postJson('/conversations/bulk', payload, key)).data;
      } catch (e) {
        notify(e.message);
        return;
      } finally {
        busy(false);
      }
      clearBulk();
      showProgress(b);
      while (b.state === 'queued' || b.state === 'running') {
        await new Promise((r) => setTimeout(r, 400));
        try {
          const res = await fetch(b.progress_url, { credentials: 'same-origin' });
          if (res.ok) b = await res.json();
        } catch (e) { /* the next poll */ }
        showProgress(b);
      }
      refresh();
      setTimeout(() => { progressBox.hidden = true; syncBulk(); }, 6000);
    }
    $$('[data-bulk]', bulkBar).forEach((btn) => btn.addEventListener('click', () => {
      const action = btn.dataset.bulk;
      const n = chosen();
      if (action === 'close') {
        closeTarget = null;
        $('#bulk-close-count').textContent = plural(n);
        $('#bulk-close-dialog').showModal();
      } else if (action === 'delete') {
        $('#bulk-delete-count').textContent = n.toLocaleString();
        $('#bulk-delete-expected').textContent = String(n);
        $('#bulk-delete-typed').value = '';
        $('#bulk-delete-confirm').disabled = true;
        $('#bulk-delete-dialog').showModal();
      } else if (action === 'export') {
        if (!allMatching) notify('Export takes the whole view (its filters, search and sort).');
        const exp = $('#export-button');
        if (exp) exp.click();
      } else {
        runBulk({ action });
      }
    }));
    $('#bulk-assignee').addEventListener('change', (ev) => {
      const v = ev.target.value;
      ev.target.selectedIndex = 0;
      runBulk({ action: 'assign', assignee_id: v === 'none' ? null : v });
    });
    $('#bulk-close-confirm').addEventListener('click', async (ev) => {
      const reason = $('#bulk-end-reason').value.trim();
      if (!reason) return;
      ev.preventDefault();
      $('#bulk-close-dialog').close();
      if (closeTarget) {
        const id = closeTarget;
        closeTarget = null;
        try { await postJson('/conversations/' + encodeURIComponent(id) + '/status', { status: 'closed', end_reason: reason }); refresh(); } catch (e) { notify(e.message); }
      } else {
        runBulk({ action: 'close', end_reason: reason });
      }
    });
    // Admins only: members get no delete dialog.
    const typed = $('#bulk-delete-typed');
    if (typed) {
      typed.addEventListener('input', () => {
        $('#bulk-delete-confirm').disabled = typed.value.trim() !== $('#bulk-delete-expected').textContent;
      });
      $('#bulk-delete-confirm').addEventListener('click', (ev) => {
        ev.preventDefault();
        if (typed.value.trim() !== $('#bulk-delete-expected').textContent) return;
        $('#bulk-delete-dialog').close();
        runBulk({ action: 'delete' });
      });
    }
    // A row's own menu: close (with its reason), archive, reopen.
    table.addEventListener('click', async (ev) => {
      const item = ev.target.closest('[data-row-status]');
      if (!item) return;
      const row = item.closest('tr.row');
      const menu = item.closest('details');
      if (menu) menu.open = false;
      if (item.dataset.rowStatus === 'closed') {
        closeTarget = row.dataset.id;
        $('#bulk-close-count').textContent = 'this conversation';
        $('#bulk-close-dialog').showModal();
        return;
      }
      try { await postJson('/conversations/' + encodeURIComponent(row.dataset.id) + '/status', { status: item.dataset.rowStatus }); refresh(); } catch (e) { notify(e.message); }
    });
    syncBulk();
  }

  // Opt-in browser notifications of new hand-off requests (the assistant asking for a person).
  const notifyToggle = $('#notify-toggle');
  const notifyOn = () => window.Notification && Notification.permission === 'granted' && localStorage.getItem('parley-notify') === 'on';
  function syncNotifyToggle() {
    if (!notifyToggle) return;
    if (!window.Notification) { notifyToggle.hidden = true; return; }
    const on = notifyOn();
    notifyToggle.setAttribute('aria-pressed', String(on));
    notifyToggle.textContent = on ? 'Notifications on' : 'Notify me of hand-offs';
    notifyToggle.title = Notification.permission === 'denied' ? 'The browser blocks notifications for this site' : '';
  }
  if (notifyToggle) {
    notifyToggle.addEventListener('click', async () => {
      if (notifyOn()) {
        localStorage.setItem('parley-notify', 'off');
      } else {
        const p = Notification.permission === 'default' ? await Notification.requestPermission() : Notification.permission;
        if (p === 'granted') localStorage.setItem('parley-notify', 'on'); else notify('The browser did not allow notifications.');
      }
      syncNotifyToggle();
    });
    syncNotifyToggle();
  }
  window.parleyHandoffNotice = (e) => {
    if (!notifyOn()) return;
    const n = new Notification('Needs a human', { body: (e.data && e.data.reason) || 'A customer asked for a person.', tag: 'handoff-' + e.conversation_id });
    n.onclick = () => { window.focus(); openPanel('/conversations?open=' + encodeURIComponent(e.conversation_id), true); n.close(); };
  };
  if (scrim) scrim.addEventListener('click', () => closePanel(true));
  window.addEventListener('popstate', () => {
    if (query().get('open')) openPanel(location.href, false); else closePanel(false);
  });

  // Keyboard: / search, j/k move, Enter open, Esc close, 1-3 tabs.
  let focused = null;
  function focusRow(row) {
    $$('tr.row.kbd').forEach((r) => r.classList.remove('kbd'));
    focused = row;
    if (row) {
      row.classList.add('kbd');
      row.scrollIntoView({ block: 'nearest' });
    }
  }
  function moveFocus(step) {
    const rows = $$('tr.row');
    if (!rows.length) return;
    const at = focused ? rows.indexOf(focused) : (step > 0 ? -1 : rows.length);
    focusRow(rows[Math.max(0, Math.min(rows.length - 1, at + step))]);
  }
  doc.addEventListener('keydown', (ev) => {
    const t = ev.target;
    const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable);
    if (ev.key === 'Escape') {
      if ($('dialog[open]')) return;
      const menu = $('#filter-menu');
      if (typing) { t.blur(); return; }
      if (panel && panel.classList.contains('open')) { ev.preventDefault(); closePanel(true); return; }
      if (menu && menu.open) menu.open = false;
      return;
    }
    if (typing || ev.metaKey || ev.ctrlKey || ev.altKey) return;
    const panelOpen = panel && panel.classList.contains('open');
    if (ev.key === '/') {
      const search = $('#search');
      if (search) { ev.preventDefault(); search.focus(); search.select(); }
    } else if (ev.key === 'j' || ev.key === 'k') {
      moveFocus(ev.key === 'j' ? 1 : -1);
      if (panelOpen && focused) openPanel(focused.dataset.href, true);
    } else if (ev.key === 'Enter' && focused && !panelOpen) {
      openPanel(focused.dataset.href, true);
    } else if (panelOpen && (ev.key === '1' || ev.key === '2' || ev.key === '3')) {
      showTab(['overview', 'transcript', 'client'][Number(ev.key) - 1]);
    }
  });

  // The filter menu closes on an outside click.
  doc.addEventListener('click', (ev) => {
    const menu = $('#filter-menu');
    if (menu && menu.open && !menu.contains(ev.target)) menu.open = false;
  });

  // One-off notices leave the address once shown.
  const notice = $('#notice');
  if (notice) {
    const p = query();
    p.delete('notice');
    history.replaceState(history.state, '', hrefOf(p));
    setTimeout(() => notice.remove(), 6000);
  }

  // Page loads show the progress bar.
  doc.addEventListener('submit', (ev) => {
    if (!ev.defaultPrevented && !(ev.submitter && ev.submitter.getAttribute('formmethod') === 'dialog')) busy(true);
  });
  window.addEventListener('pageshow', () => busy(false));

  if (panel && panel.classList.contains('open')) wirePanel();

  // Live updates (issue 14): the dashboard's event stream names what changed, and the page
  // re-fetches it from the server: the open panel (new messages, status, rating, variables),
  // the list rows and the count badge. A deleted conversation disappears. Bursts are coalesced.
  if (panel && table && window.EventSource) {
    const live = new EventSource('/dashboard/events');
    const openId = () => {
      const inner = $('.panel-inner', panel);
      return panel.classList.contains('open') && inner ? inner.dataset.id : null;
    };
    let panelTimer = null;
    let listTimer = null;
    window.parleyRefreshPanel = (id) => refreshPanel(id);
    async function refreshPanel(id) {
      if (openId() !== id) return;
      const typing = doc.activeElement && doc.activeElement.id === 'composer-text';
      const active = $('.tab-link.active:not([hidden])', panel) || $('.tab-link.active', panel);
      const tab = active ? active.dataset.tab : null;
      const params = query();
      params.delete('open');
      params.delete('notice');
      try {
        const html = await fetchHtml('/conversations/' + encodeURIComponent(id) + '/panel?' + params);
        if (openId() !== id) return;
        panel.innerHTML = html;
        wirePanel();
        if (tab) showTab(tab);
        const pane = $('[data-pane="transcript"]', panel);
        if (pane) pane.scrollTop = pane.scrollHeight;
        const text = $('#composer-text', panel);
        if (typing && text) text.focus();
      } catch (e) { /* the next event or a reload shows it */ }
    }
    async function refreshList() {
      const params = query();
      params.delete('open');
      params.delete('notice');
      try {
        const html = await fetchHtml(hrefOf(params));
        const fresh = new DOMParser().parseFromString(html, 'text/html');
        const body = $('#conversations tbody', fresh);
        const mine = $('#conversations tbody');
        if (body && mine) mine.replaceWith(body);
        const count = $('#nav-count', fresh);
        const badge = $('#nav-count');
        if (count && badge) {
          badge.textContent = count.textContent;
          badge.title = count.title;
        }
        const need = $('#attention-count', fresh);
        if (need && attention) {
          attention.textContent = need.textContent;
          attention.dataset.count = need.dataset.count;
          attention.hidden = need.hidden;
          titleCount();
        }
        markSelected(openId());
        if (window.parleyBulkSync) window.parleyBulkSync();
      } catch (e) { /* the next event or a reload shows it */ }
    }
    window.parleyRefreshList = () => refreshList();
    function onEvent(ev) {
      let e;
      try { e = JSON.parse(ev.data); } catch (err) { return; }
      const id = e.conversation_id;
      if (e.type === 'handoff.requested' && window.parleyHandoffNotice) window.parleyHandoffNotice(e);
      if (e.type === 'conversation.deleted') {
        const row = $('tr.row[data-id="' + id + '"]');
        if (row) row.remove();
        if (openId() === id) closePanel(true);
      } else if (id && openId() === id) {
        clearTimeout(panelTimer);
        panelTimer = setTimeout(() => refreshPanel(id), 100);
      }
      clearTimeout(listTimer);
      listTimer = setTimeout(refreshList, 300);
    }
    ['conversation.created', 'conversation.updated', 'conversation.deleted', 'message.created',
      'message.updated', 'variables.updated', 'rating.updated', 'handoff.requested'].forEach((t) => live.addEventListener(t, onEvent));
    window.addEventListener('pagehide', () => live.close());
  }

  // Selects marked data-autosubmit submit their form on change (the Test Chat assistant picker).
  $$('select[data-autosubmit]').forEach((s) => s.addEventListener('change', () => s.form.submit()));

  // The assistant form's provider picker: the URL and key fields belong to a custom provider
  // only, and each server provider shows the models it offers. Without script every field is
  // shown and the server ignores the ones that do not apply.
  const picker = $('[data-provider-picker]');
  if (picker) {
    const sync = () => {
      const value = picker.value;
      $$('[data-custom-provider]').forEach((el) => { el.hidden = value !== 'custom'; });
      $$('[data-provider-hint]').forEach((el) => { el.hidden = el.dataset.providerHint !== value; });
    };
    picker.addEventListener('change', sync);
    sync();
  }

  // Test Chat: send a message, read the answer as server-sent events from the same request.
  const tc = $('#tc-form');
  if (tc) {
    const log = $('#tc-log');
    const input = $('#tc-input');
    const sendBtn = $('#tc-send');
    const csrf = $('meta[name=csrf-token]').content;
    const scrollDown = () => { log.scrollTop = log.scrollHeight; };
    scrollDown();
    const bubble = (side, role, text, cls) => {
      const hello = $('#tc-hello');
      if (hello) hello.remove();
      const m = doc.createElement('div');
      m.className = 'msg side-' + side + ' role-' + role + (cls ? ' ' + cls : '');
      const b = doc.createElement('div');
      b.className = 'bubble';
      const p = doc.createElement('div');
      p.className = 'plain';
      p.textContent = text;
      b.appendChild(p);
      m.appendChild(b);
      log.appendChild(m);
      scrollDown();
      return m;
    };
    const replaceWith = (node, html) => {
      const t = doc.createElement('template');
      t.innerHTML = html.trim();
      const fresh = t.content.firstElementChild;
      if (node && node.parentNode) node.replaceWith(fresh); else log.appendChild(fresh);
      scrollDown();
      return fresh;
    };
    const setVar = (key, value, source) => {
      const table = $('#tc-vars');
      const empty = $('#tc-vars-empty');
      if (empty) empty.hidden = true;
      table.hidden = false;
      let row = $$('tr', table).find((r) => r.dataset.key === key);
      if (!row) {
        row = doc.createElement('tr');
        row.dataset.key = key;
        for (let i = 0; i < 3; i++) row.appendChild(doc.createElement('td'));
        row.cells[0].className = 'mono';
        table.tBodies[0].appendChild(row);
      }
      // Isolated like the server-rendered rows (<bdi>): bidi controls in a value stay inside it.
      const isolated = (text) => { const i = doc.createElement('bdi'); i.textContent = text; return i; };
      row.cells[0].replaceChildren(isolated(key));
      row.cells[1].replaceChildren(isolated(value));
      const src = doc.createElement('span');
      src.className = 'src src-' + source;
      src.textContent = source;
      row.cells[2].replaceChildren(src);
      row.classList.remove('var-new');
      void row.offsetWidth;
      row.classList.add('var-new');
    };
    let mine = null;
    let pending = null;
    const handle = (event, data) => {
      if (event === 'conversation') {
        tc.dataset.conversation = data.id;
        const p = new URLSearchParams({ assistant: tc.dataset.assistant, conversation: data.id });
        history.replaceState(null, '', '/test-chat?' + p);
        const open = $('#tc-open');
        open.href = data.href;
        open.hidden = false;
      } else if (event === 'stored') {
        if (data.role === 'user') {
          mine = replaceWith(mine, data.html);
        } else {
          pending = replaceWith(pending, data.html);
          pending = null;
        }
      } else if (event === 'delta') {
        if (!pending) pending = bubble('left', 'assistant', '', 'streaming');
        // The first piece of text replaces the "Thinking…" or "trying again" placeholder.
        if (pending.classList.contains('waiting')) $('.plain', pending).textContent = '';
        pending.classList.remove('waiting');
        pending.classList.add('streaming');
        $('.plain', pending).textContent += data.text;
        scrollDown();
      } else if (event === 'retrying') {
        if (pending) {
          $('.plain', pending).textContent = 'The provider did not answer; trying again (' + data.attempt + ')…';
          pending.classList.remove('streaming');
          pending.classList.add('waiting');
        }
      } else if (event === 'variable') {
        setVar(data.key, data.value, data.source);
      } else if (event === 'usage') {
        $('#tc-prompt').textContent = data.prompt_tokens;
        $('#tc-completion').textContent = data.completion_tokens;
        $('#tc-cost').textContent = data.cost;
        $('#tc-messages').textContent = data.messages;
      } else if (event === 'error') {
        notify(data.message);
      }
    };
    const send = async () => {
      const content = input.value.trim();
      if (!content || tc.dataset.busy) return;
      tc.dataset.busy = '1';
      sendBtn.disabled = true;
      input.value = '';
      mine = bubble('right', 'user', content);
      pending = bubble('left', 'assistant', 'Thinking…', 'waiting');
      try {
        const res = await fetch('/test-chat/send', {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
          body: JSON.stringify({ assistant: tc.dataset.assistant, conversation: tc.dataset.conversation || null, content }),
        });
        if (!res.ok || !res.body) {
          const j = await res.json().catch(() => null);
          throw new Error(j && j.error ? j.error.message : 'HTTP ' + res.status);
        }
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let event = 'message';
            let data = '';
            block.split('\n').forEach((line) => {
              if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            });
            if (data) handle(event, JSON.parse(data));
          }
        }
      } catch (err) {
        if (pending) {
          pending.classList.remove('waiting', 'streaming');
          pending.classList.add('failed');
          $('.plain', pending).textContent = 'Not sent: ' + err.message;
        }
        input.value = content;
      } finally {
        delete tc.dataset.busy;
        sendBtn.disabled = false;
        input.focus();
      }
    };
    tc.addEventListener('submit', (ev) => { ev.preventDefault(); send(); });
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); send(); }
    });
    if (!input.disabled) input.focus();
  }
})();
