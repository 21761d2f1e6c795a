"""The status page on the health listener: `/` (one small HTML page) and `/status.json` (what it shows).

Self-contained (no external asset, a NAS without Internet shows it whole) and read-only. The page
fetches `/status.json` every few seconds and redraws: per Envoy its availability, firmware, token
expiry, last poll, last error, power now and grid state, then the microinverter array as tiles
coloured by relative output, stale and underperforming units marked. Every value is set with
`textContent`, never as markup, and the Content-Security-Policy allows only this page's own script and
style and requests to its own origin.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import Any, Final

import envoy2mqtt

from .bridge import EnvoyStatus
from .clock import iso_utc

REFRESH_SECONDS: Final = 5

_STYLE: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 18px;display:flex;gap:16px;align-items:baseline}
header h1{font-size:17px;margin:0}header span{opacity:.7;font-size:12px}
main{padding:14px 18px;display:grid;gap:14px}
section{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0002}
h2{font-size:16px;margin:0 0 8px}.badge{font-size:12px;padding:2px 8px;border-radius:10px;margin-left:8px}
.online{background:#d8f3dc;color:#1b5e20}.offline{background:#fde2e1;color:#9b1c1c}.unknown{background:#eee}
dl{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:4px 16px;margin:0 0 10px}
dt{font-size:11px;color:#667;text-transform:uppercase}dd{margin:0;font-weight:600}
.error dd.v{color:#9b1c1c}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(74px,1fr));gap:6px}
.tile{border-radius:6px;padding:5px 6px;color:#fff;font-size:12px;border:3px solid transparent;min-height:40px}
.tile b{display:block;font-size:13px;white-space:nowrap}.tile.none{background:#9aa0aa}
.tile.stale{border-style:dashed;border-color:#1d2330;opacity:.75}
.tile.under{border-color:#c00}.tile .mark{font-weight:700}
.legend{font-size:12px;color:#556;margin-top:6px}
"""

_SCRIPT: Final = """
const $=(t,c,x)=>{const e=document.createElement(t);if(c)e.className=c;if(x!=null)e.textContent=x;return e};
const w=v=>v==null?'—':Math.round(v).toLocaleString()+' W';
const when=v=>v==null?'—':new Date(v).toLocaleString();
const hue=r=>Math.max(0,Math.min(1,(r-50)/50))*120;
function field(dl,name,value,cls){const d=$('div',cls);d.append($('dt',null,name),$('dd','v',value));dl.append(d)}
function envoy(e){
  const s=$('section','envoy');s.dataset.envoy=e.id;
  const h=$('h2',null,e.name);const st=e.available==null?'unknown':e.available?'online':'offline';
  h.append($('span','badge '+st,st));s.append(h);
  const dl=$('dl');
  field(dl,'Serial',e.serial||'—');field(dl,'Firmware',e.firmware||'—');
  field(dl,'Token expiry',e.auth_mode==='token'?when(e.token_expires_at):'no token ('+(e.auth_mode||'?')+')');
  field(dl,'Last poll',when(e.last_poll_ok));
  field(dl,'Last error',e.last_error||'none',e.last_error?'error':null);
  field(dl,'Production',w(e.production_power));
  if(e.consumption_power!=null)field(dl,'Consumption',w(e.consumption_power));
  if(e.net_power!=null)field(dl,'Grid',w(e.net_power));
  if(e.on_grid!=null)field(dl,'Grid relay',e.on_grid?'on grid':'OFF GRID',e.on_grid?null:'error');
  const hp=e.health||{};
  if(hp.inverters_provisioned!=null)field(dl,'Microinverters',
    hp.inverters_reporting+' / '+hp.inverters_provisioned+' reporting');
  if(hp.inverters_underperforming!=null)field(dl,'Underperforming',String(hp.inverters_underperforming),
    hp.inverters_underperforming?'error':null);
  if(hp.site_output!=null)field(dl,'Output of capacity',hp.site_output+' %');
  s.append(dl);
  const tiles=$('div','tiles');
  for(const t of e.inverters){
    const d=$('div','tile');d.dataset.serial=t.serial;
    if(t.relative_output==null)d.classList.add('none');
    else d.style.background='hsl('+hue(t.relative_output)+',62%,40%)';
    if(t.stale)d.classList.add('stale');
    if(t.underperforming)d.classList.add('under');
    d.append($('b',null,'…'+t.serial.slice(-6)),$('span',null,w(t.power)));
    if(t.relative_output!=null)d.append($('div',null,t.relative_output+' %'));
    if(t.stale)d.append($('div','mark','stale'));
    if(t.underperforming)d.append($('div','mark','! low'));
    d.title=t.serial+'\\npower '+w(t.power)+' of '+w(t.max_power)+'\\nrelative '+
      (t.relative_output==null?'—':t.relative_output+' %')+'\\nlast report '+when(t.last_report)+
      (t.underperforming?'\\nUNDERPERFORMING':'')+(t.stale?'\\nSTALE':'');
    tiles.append(d);
  }
  if(e.inverters.length){s.append($('div','legend',
    'Tiles: green = as its siblings, red = far below them; dashed = stale, red border = underperforming'));
    s.append(tiles)}
  return s;
}
async function refresh(){
  try{
    const r=await fetch('status.json',{cache:'no-store'});const doc=await r.json();
    document.getElementById('meta').textContent='envoy2mqtt '+doc.version+' · updated '+when(doc.generated_at);
    document.getElementById('envoys').replaceChildren(...doc.envoys.map(envoy));
    document.body.dataset.loaded='1';
  }catch(err){document.getElementById('meta').textContent='cannot reach the bridge: '+err}
}
refresh();setInterval(refresh,REFRESH_MS);
""".replace("REFRESH_MS", str(REFRESH_SECONDS * 1000))


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE: Final = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>envoy2mqtt</title><style>{_STYLE}</style></head>
<body><header><h1>envoy2mqtt</h1><span id="meta">loading…</span></header>
<main id="envoys"></main>
<script>{_SCRIPT}</script></body></html>
"""

CONTENT_SECURITY_POLICY: Final = (
    f"default-src 'none'; script-src {_hash(_SCRIPT)}; style-src {_hash(_STYLE)}; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _iso(value: float | None) -> str | None:
    return iso_utc(value) if value is not None else None


def status_document(statuses: Iterable[EnvoyStatus], now: float) -> dict[str, Any]:
    """What `/status.json` answers: everything the page draws, nothing secret."""
    envoys = []
    for s in statuses:
        envoys.append(
            {
                "id": s.id,
                "name": s.name,
                "serial": s.serial,
                "firmware": s.firmware,
                "auth_mode": s.auth_mode,
                "token_type": s.token_type,
                "token_expires_at": _iso(s.token_expires_at),
                "available": s.available,
                "ready": s.ready,
                "last_poll_ok": _iso(s.last_poll_ok),
                "last_error": s.last_error,
                "production_power": s.production_power,
                "consumption_power": s.consumption_power,
                "net_power": s.net_power,
                "battery_soc": s.battery_soc,
                "on_grid": s.on_grid,
                "health": s.health,
                "inverters": [
                    {
                        "serial": t.serial,
                        "power": t.power,
                        "max_power": t.max_power,
                        "relative_output": t.relative_output,
                        "underperforming": t.underperforming,
                        "stale": t.stale,
                        "last_report": t.last_report,
                    }
                    for t in s.inverters
                ],
            }
        )
    return {"version": envoy2mqtt.__version__, "generated_at": iso_utc(now), "envoys": envoys}
