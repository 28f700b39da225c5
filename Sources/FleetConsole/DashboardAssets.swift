/// The dashboard's style sheet and script, served at /static (see
/// Dashboard+SignIn): in the binary like the templates, no build step, no CDN.
extension DashboardTemplates {
    static let css = """
    :root { --fg: #1b1f24; --muted: #57606a; --bg: #ffffff; --line: #d0d7de; --ok: #116329; --warn: #7d4e00; --crit: #a40e26; --accent: #0a58ca; }
    * { box-sizing: border-box; }
    [hidden] { display: none !important; }
    body { margin: 0; font: 16px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
    header nav { display: flex; flex-wrap: wrap; gap: .25rem 1rem; align-items: center; padding: .6rem 1rem; border-bottom: 1px solid var(--line); }
    nav a { color: var(--accent); text-decoration: none; padding: .2rem 0; }
    nav a[aria-current] { font-weight: 700; text-decoration: underline; }
    nav .brand { font-weight: 700; color: var(--fg); }
    #whoami { margin-left: auto; color: var(--muted); }
    main { padding: 1rem; max-width: 1200px; margin: 0 auto; }
    .sites { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 1rem; }
    .site, section.rollout, section.usage { border: 1px solid var(--line); border-radius: 8px; padding: 1rem; }
    .counts { display: grid; grid-template-columns: repeat(3, 1fr); gap: .5rem; margin: 0 0 1rem; }
    .counts div { border: 1px solid var(--line); border-radius: 6px; padding: .4rem .6rem; }
    dt { color: var(--muted); font-size: .85rem; }
    dd { margin: 0; font-size: 1.3rem; font-weight: 600; }
    .telemetry { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: .5rem; }
    table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
    th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
    th button { all: unset; cursor: pointer; font-weight: 700; color: var(--accent); }
    th button:focus-visible, button:focus-visible, a:focus-visible, input:focus-visible, select:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
    button { font: inherit; padding: .35rem .8rem; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 6px; cursor: pointer; }
    form { display: inline-flex; gap: .5rem; align-items: center; flex-wrap: wrap; margin: .25rem .5rem .25rem 0; }
    select, input { font: inherit; padding: .3rem; border: 1px solid var(--muted); border-radius: 4px; }
    .filters { display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; margin: 0 0 1rem; }
    .health.ok, .state.idle, .state.in_session { color: var(--ok); }
    .health.warning { color: var(--warn); }
    .health.critical, .state.offline, .state.faulted { color: var(--crit); }
    .state.revoked { color: var(--muted); text-decoration: line-through; }
    #flash { background: #ddf4ff; border: 1px solid var(--accent); padding: .5rem; border-radius: 6px; }
    #login-error { color: var(--crit); }
    svg text { font: 12px system-ui, sans-serif; fill: var(--fg); }
    .skip { position: absolute; left: -10000px; top: 0; background: var(--bg); padding: .5rem; }
    .skip:focus { left: .5rem; z-index: 10; }
    .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
    h3 { font-size: 1rem; margin: .5rem 0; }
    .floor { list-style: none; padding: 0; margin: 0 0 1rem; display: grid; grid-template-columns: repeat(auto-fill, minmax(130px, 1fr)); gap: .5rem; }
    .tile { border: 1px solid var(--line); border-left: 6px solid var(--muted); border-radius: 6px; padding: .35rem .5rem; display: flex; flex-direction: column; font-size: .85rem; min-height: 5.2rem; }
    .tile-name { font-weight: 700; color: var(--accent); }
    .tile-label { font-weight: 600; }
    .tile-alert { color: var(--crit); }
    .tile.in_session { border-left-color: #0a58ca; background: #eef4ff; }
    .tile.idle { border-left-color: var(--ok); }
    .tile.offline { border-left-color: #57606a; background: #f3f4f6; }
    .tile.faulted { border-left-color: var(--crit); background: #fff0f0; }
    .tile.locked_out { border-left-color: var(--warn); background: #fff8e6; }
    .tile.revoked { border-left-color: var(--muted); text-decoration: line-through; }
    .pages { display: flex; gap: 1rem; }
    fieldset { border: 1px solid var(--line); border-radius: 6px; margin: 0 0 .8rem; display: flex; flex-wrap: wrap; gap: .4rem .8rem; align-items: center; }
    textarea { font: 14px/1.4 ui-monospace, monospace; padding: .3rem; border: 1px solid var(--muted); border-radius: 4px; max-width: 100%; }
    #rollout-reasons { color: var(--crit); }
    #rollout-reasons code { font-weight: 700; }
    tr[aria-current] { font-weight: 700; }
    .chart { max-width: 720px; }
    .steps li { padding: .15rem 0; }
    .steps li.current { font-weight: 700; border-left: 4px solid var(--accent); padding-left: .4rem; }
    .pages a { color: var(--accent); }
    @media (max-width: 820px) { .counts { grid-template-columns: repeat(2, 1fr); } table { font-size: .9rem; } }
    """

    static let js = """
    // Live updates (Server-Sent Events) and the overview's floor filter. The
    // devices list is filtered, sorted and paged by the server (a GET form).
    (function () {
      function set(sel, value) { document.querySelectorAll(sel).forEach(function (e) { e.textContent = value; }); }
      var live = document.querySelector('[data-events]');
      if (live && window.EventSource) {
        var es = new EventSource(live.getAttribute('data-events'));
        es.addEventListener('signed_out', function () { es.close(); });
        es.onmessage = function (m) {
          var d = JSON.parse(m.data);
          Object.keys(d).forEach(function (k) { if (k !== 'chart' && k !== 'steps') set('[data-live="' + k + '"]', d[k]); });
          // The chart is the server's SVG (numbers and known zone names only).
          var chart = document.getElementById('pressure');
          if (chart && typeof d.chart === 'string') chart.innerHTML = d.chart;
          var steps = document.getElementById('steps');
          if (steps && d.steps) {
            steps.replaceChildren.apply(steps, d.steps.map(function (s) {
              var li = document.createElement('li');
              li.dataset.step = s.index;
              li.textContent = s.text;
              if (s.current) { li.setAttribute('aria-current', 'step'); li.className = 'current'; }
              return li;
            }));
            var none = document.getElementById('no-steps');
            if (none) none.hidden = d.steps.length > 0;
          }
        };
      }
      var ro = document.querySelector('[data-rollout-events]');
      if (ro && window.EventSource) {
        var rs = new EventSource(ro.getAttribute('data-rollout-events'));
        rs.addEventListener('signed_out', function () { rs.close(); });
        function rows(id, items, cells, key) {
          var body = document.querySelector('#' + id + ' tbody');
          if (!body) return;
          body.replaceChildren.apply(body, items.map(function (it) {
            var tr = document.createElement('tr');
            tr.dataset[key[0]] = key[1](it);
            if (it.current) tr.setAttribute('aria-current', 'step');
            cells(it).forEach(function (c) { var td = document.createElement('td'); td.textContent = c; tr.appendChild(td); });
            return tr;
          }));
        }
        rs.onmessage = function (m) {
          var d = JSON.parse(m.data);
          ['state', 'reason', 'counts', 'threshold'].forEach(function (k) { set('[data-ro="' + k + '"]', d[k]); });
          rows('ro-waves', d.waves, function (w) { return [w.index, w.size, w.state]; }, ['wave', function (w) { return w.index; }]);
          rows('ro-devices', d.devices, function (x) { return [x.wave, x.site + '/' + x.device, x.state, x.version, x.error]; },
               ['device', function (x) { return x.site + '/' + x.device; }]);
        };
      }
      var check = document.getElementById('rollout-check');
      if (check) check.focus();
      // The rollout form's live preview: the server's check as the form is
      // filled in (nothing is sent to a device).
      var roForm = document.getElementById('rollout-form'), roLive = document.getElementById('live-preview');
      if (roForm && roLive && window.fetch) {
        var timer = null;
        var preview = function () {
          var body = new URLSearchParams(new FormData(roForm));
          fetch('/ui/rollouts/preview', { method: 'POST', body: body, credentials: 'same-origin' })
            .then(function (r) { return r.ok ? r.json() : null; })
            .then(function (p) {
              if (!p) return;
              var text = p.targets + ' devices match; waves: ' + (p.waves.length ? p.waves.join(' + ') : 'none');
              text += p.ok ? '; no problems.' : '; ' + p.reasons.length + ' to fix: ' + p.reasons.map(function (r) { return r.split(': ')[0]; }).join(', ') + '.';
              roLive.textContent = text;
            })
            .catch(function () {});
        };
        roForm.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(preview, 400); });
        preview();
      }
      function el(tag, cls, text) {
        var e = document.createElement(tag);
        if (cls) e.className = cls;
        if (text !== undefined) e.textContent = text;
        return e;
      }
      // One tile, built with textContent only: whatever a device sent stays text.
      function tile(t) {
        var li = el('li', 'tile ' + t.state);
        li.dataset.device = t.site + '/' + t.device;
        li.dataset.state = t.state;
        var a = el('a', 'tile-name', t.device);
        a.href = '/devices/' + encodeURIComponent(t.site) + '/' + encodeURIComponent(t.device);
        li.appendChild(a);
        var parts = [['tile-label', 'label'], ['', 'program'], ['', 'left'], ['tile-alert', 'alert']];
        parts.forEach(function (p) { var s = el('span', p[0], t[p[1]]); s.dataset.tile = p[1]; li.appendChild(s); });
        return li;
      }
      function filterFloor() {
        var state = document.getElementById('floor-state'), text = document.getElementById('floor-text');
        if (!state || !text) return;
        var st = state.value, q = text.value.toLowerCase();
        document.querySelectorAll('.floor .tile').forEach(function (li) {
          li.hidden = !((!st || li.dataset.state === st) && (!q || li.textContent.toLowerCase().indexOf(q) >= 0));
        });
      }
      if (document.body.dataset.page === 'overview') {
        ['floor-state', 'floor-text'].forEach(function (id) {
          var e = document.getElementById(id);
          if (e) e.addEventListener('input', filterFloor);
        });
        filterFloor();
      }
      if (document.body.dataset.page === 'overview' && window.EventSource) {
        var os = new EventSource('/events/overview');
        os.addEventListener('signed_out', function () { os.close(); });
        os.onmessage = function (m) {
          JSON.parse(m.data).forEach(function (s) {
            var sec = document.querySelector('section.site[data-site="' + CSS.escape(s.site) + '"]');
            if (!sec) return;
            Object.keys(s.counts).forEach(function (k) {
              var e = sec.querySelector('[data-count="' + k + '"]');
              if (e) e.textContent = s.counts[k];
            });
            var floor = sec.querySelector('ul.floor');
            if (floor && s.tiles) {
              var focused = document.activeElement && floor.contains(document.activeElement) ? document.activeElement.closest('li').dataset.device : null;
              var items = s.tiles.map(tile);
              floor.replaceChildren.apply(floor, items);
              if (focused) items.forEach(function (li) { if (li.dataset.device === focused) li.querySelector('a').focus(); });
            }
            var more = sec.querySelector('[data-more]');
            if (more) { more.hidden = !s.more; more.querySelector('span').textContent = s.more; }
          });
          filterFloor();
        };
      }
    })();
    """
}
