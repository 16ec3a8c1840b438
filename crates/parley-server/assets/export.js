// The Export dialog of the Conversations list and the print view's Print button (issue 16).
// The dialog downloads the current view: the page's own query string (filters, search, sort)
// goes to /conversations/export (or /conversations/finetune) unchanged, so the server reads it
// exactly as it read the list. It counts first, then streams the file with fetch(), showing the
// rows and bytes received, and saves it through a blob link. Cancel aborts the fetch.
(() => {
  'use strict';
  const doc = document;
  const $ = (sel, root) => (root || doc).querySelector(sel);

  const printButton = $('[data-print]');
  if (printButton) printButton.addEventListener('click', () => window.print());

  const dialog = $('#export-dialog');
  const opener = $('#export-button');
  if (!dialog || !opener) return;
  const form = $('#export-form', dialog);
  const summary = $('#export-summary', dialog);
  const received = $('#export-received', dialog);
  const progress = $('#export-progress', dialog);
  const start = $('#export-start', dialog);
  const cancel = $('#export-cancel', dialog);
  const finetuneBox = $('#export-finetune', dialog);
  const formatBox = $('#export-format', dialog);
  let controller = null;
  let total = null;
  let estimateSeq = 0;

  const value = (name) => {
    const el = form.elements[name];
    if (!el) return '';
    if (el instanceof RadioNodeList) return el.value;
    if (el.type === 'checkbox') return el.checked ? el.value : '';
    return el.value;
  };
  const kind = () => value('kind');

  // The view: the list's query string without what only concerns the page (panel, paging).
  const viewParams = () => {
    const p = new URLSearchParams(location.search);
    ['open', 'tab', 'tpage', 'after', 'before', 'notice'].forEach((k) => p.delete(k));
    return p;
  };

  const requestUrl = (path) => {
    const p = viewParams();
    if (kind() === 'finetune') {
      if (value('train_on')) p.set('train_on', 'team');
      if (value('tools')) p.set('tools', 'keep');
      p.set('redact', value('redact') ? 'true' : 'false');
      if (value('has_team_replies')) p.set('has_team_replies', 'true');
      if (value('ft_min_rating')) p.set('min_rating', value('ft_min_rating'));
      if (value('ft_resolution')) p.set('resolution', value('ft_resolution'));
      return (path || '/conversations/finetune') + '?' + p.toString();
    }
    p.set('format', value('format') || 'csv');
    p.set('rows', kind() === 'message' ? 'message' : 'conversation');
    return (path || '/conversations/export') + '?' + p.toString();
  };

  const fmtBytes = (n) => {
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KB';
    return (n / 1024 / 1024).toFixed(1) + ' MB';
  };
  const fmtInt = (n) => Number(n).toLocaleString('en-US');

  const refreshSummary = async () => {
    const seq = ++estimateSeq;
    finetuneBox.hidden = kind() !== 'finetune';
    formatBox.hidden = kind() === 'finetune';
    summary.textContent = 'Counting…';
    start.disabled = true;
    try {
      if (kind() === 'finetune') {
        const res = await fetch(requestUrl('/conversations/finetune/estimate'), { credentials: 'same-origin' });
        if (!res.ok) throw new Error('HTTP ' + res.status);
        const e = await res.json();
        if (seq !== estimateSeq) return;
        total = e.examples;
        summary.textContent = fmtInt(e.examples) + ' examples, about ' + fmtInt(e.estimated_tokens) +
          ' tokens (' + fmtInt(e.conversations) + ' conversations, ' + fmtInt(e.skipped) + ' with nothing to train on)';
        summary.dataset.examples = String(e.examples);
        summary.dataset.tokens = String(e.estimated_tokens);
      } else {
        const res = await fetch(requestUrl('/conversations/export/count'), { credentials: 'same-origin' });
        if (!res.ok) throw new Error('HTTP ' + res.status);
        const c = await res.json();
        if (seq !== estimateSeq) return;
        total = kind() === 'message' ? null : c.count;
        summary.textContent = (c.exact ? '' : 'at least ') + fmtInt(c.count) + ' conversations in this view';
        delete summary.dataset.examples;
      }
      start.disabled = false;
    } catch (err) {
      if (seq === estimateSeq) summary.textContent = 'Could not count this view: ' + err.message;
    }
  };

  // Rows in a chunk: line ends outside quoted CSV cells (JSONL has no quoted line ends).
  let inQuotes = false;
  const countRows = (text, csv) => {
    let n = 0;
    for (let i = 0; i < text.length; i++) {
      const ch = text.charCodeAt(i);
      if (csv && ch === 34) inQuotes = !inQuotes;
      else if (ch === 10 && !inQuotes) n++;
    }
    return n;
  };

  const fileName = (res) => {
    const cd = res.headers.get('Content-Disposition') || '';
    const m = /filename="([^"]+)"/.exec(cd);
    return m ? m[1] : 'parley-export';
  };

  const download = async () => {
    controller = new AbortController();
    const csv = kind() !== 'finetune' && value('format') !== 'jsonl';
    inQuotes = false;
    start.disabled = true;
    progress.hidden = false;
    progress.removeAttribute('value');
    received.textContent = 'Starting…';
    dialog.dataset.state = 'running';
    try {
      const res = await fetch(requestUrl(), { credentials: 'same-origin', signal: controller.signal });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      const parts = [];
      let bytes = 0;
      let rows = csv ? -1 : 0; // the CSV header is not a row
      for (;;) {
        const { done, value: chunk } = await reader.read();
        if (done) break;
        parts.push(chunk);
        bytes += chunk.length;
        rows += countRows(decoder.decode(chunk, { stream: true }), csv);
        const shown = Math.max(rows, 0);
        received.textContent = fmtInt(shown) + (total != null ? ' of ' + fmtInt(total) : '') + ' rows · ' + fmtBytes(bytes);
        if (total) { progress.max = total; progress.value = Math.min(shown, total); }
      }
      const blob = new Blob(parts, { type: res.headers.get('Content-Type') || 'application/octet-stream' });
      const a = doc.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = fileName(res);
      doc.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
      received.textContent = 'Downloaded ' + fmtInt(Math.max(rows, 0)) + ' rows · ' + fmtBytes(bytes);
      dialog.dataset.state = 'done';
    } catch (err) {
      received.textContent = err.name === 'AbortError' ? 'Cancelled.' : 'The export failed: ' + err.message;
      dialog.dataset.state = err.name === 'AbortError' ? 'cancelled' : 'failed';
    } finally {
      controller = null;
      progress.hidden = true;
      start.disabled = false;
    }
  };

  opener.addEventListener('click', () => {
    received.textContent = '';
    delete dialog.dataset.state;
    dialog.showModal();
    refreshSummary();
  });
  form.addEventListener('change', () => refreshSummary());
  start.addEventListener('click', () => download());
  cancel.addEventListener('click', () => {
    if (controller) controller.abort();
    else dialog.close();
  });
})();
