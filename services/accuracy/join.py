"""The prediction/actual join, as Lua run inside the window store's batch script (atomic, exactly once).

Join state, under the store's namespace ``NS``:

- ``NS:p:<event_id>``: hash model version -> prediction payload, or ``joined``
  once its label came (kept, so a re-sent prediction is not counted twice);
- ``NS:a:<event_id>``: the first actual's payload (kept until expiry, so a
  later prediction of another model version joins it too);
- ``NS:expiry``: sorted set event_id -> event time after which both go.

A joined pair is appended to the window (of its subject: model version, and
``rig:<rig_id>``) that holds its *label time*, max(event time, observed time),
as one item: the prediction payload and the actual payload. New predictions
add to ``predictions`` and ``estimated_correct`` in the window of their event
time. Payloads are fields joined by :data:`SEP` (rig id and event time first).
"""

from __future__ import annotations

__all__ = ["JOINED", "JOIN_LUA", "SEP", "SWEEP_LUA"]

#: Field separator of payloads and pair items (ASCII unit separator: not in ids).
SEP = "\x1f"
#: Marker of a prediction that has its label.
JOINED = "joined"

# Arguments after the store's own: namespace, window size, horizon, then
# n_predictions x (event_id, version, event_ms, estimated p(correct), payload),
# then n_actuals x (event_id, observed_ms, payload).
# Reports {joined pairs, duplicate predictions, duplicate actuals}.
JOIN_LUA = r"""
local ns = ARGV[i]
local size, horizon = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
i = i + 3
local joined, dup_predictions, dup_actuals = 0, 0, 0

local function window_start(t) return t - t % size end

local function count_in(subject, start, fields, floats, item)
  local key = open_window(subject, start, 1)
  if not key then return end
  for name, n in pairs(fields) do redis.call('HINCRBY', key, name, n) end
  for name, x in pairs(floats) do redis.call('HINCRBYFLOAT', key, name, x) end
  if item then redis.call('RPUSH', key .. ':items', item) end
end

local function pair(version, prediction, actual)
  local rig, event_ms = string.match(prediction, '^([^\31]*)\31([^\31]*)')
  local observed_ms = tonumber(string.match(actual, '^[^\31]*\31([^\31]*)'))
  local start = window_start(math.max(tonumber(event_ms), observed_ms))
  local item = prediction .. '\31' .. actual
  count_in(version, start, {labelled = 1}, {}, item)
  count_in('rig:' .. rig, start, {labelled = 1}, {}, item)
  joined = joined + 1
end

local function expire_after(event_id, t)
  redis.call('ZADD', ns .. 'expiry', 'GT', t + horizon, event_id)
end

local n = tonumber(ARGV[i]); i = i + 1
for k = 1, n do
  local event_id, version, event_ms = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local estimate, payload = ARGV[i + 3], ARGV[i + 4]
  i = i + 5
  local pkey = ns .. 'p:' .. event_id
  if redis.call('HEXISTS', pkey, version) == 1 then
    dup_predictions = dup_predictions + 1
  else
    local rig = string.match(payload, '^([^\31]*)')
    local start = window_start(event_ms)
    count_in(version, start, {predictions = 1}, {estimated_correct = estimate}, nil)
    count_in('rig:' .. rig, start, {predictions = 1}, {estimated_correct = estimate}, nil)
    local actual = redis.call('GET', ns .. 'a:' .. event_id)
    if actual then
      redis.call('HSET', pkey, version, 'joined')
      pair(version, payload, actual)
    else
      redis.call('HSET', pkey, version, payload)
    end
    expire_after(event_id, event_ms)
  end
end

n = tonumber(ARGV[i]); i = i + 1
for k = 1, n do
  local event_id, observed_ms, payload = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  i = i + 3
  local akey = ns .. 'a:' .. event_id
  if redis.call('EXISTS', akey) == 1 then
    dup_actuals = dup_actuals + 1  -- the first label of an event wins
  else
    redis.call('SET', akey, payload)
    local waiting = redis.call('HGETALL', ns .. 'p:' .. event_id)
    for w = 1, #waiting, 2 do
      if waiting[w + 1] ~= 'joined' then
        redis.call('HSET', ns .. 'p:' .. event_id, waiting[w], 'joined')
        pair(waiting[w], waiting[w + 1], payload)
      end
    end
    expire_after(event_id, observed_ms)
  end
end
extension = {joined, dup_predictions, dup_actuals}
"""

# KEYS: expiry set, unlabelled counts per subject. ARGV: namespace, watermark, limit.
# Drops the join state of events whose horizon the watermark passed; a prediction
# still without its label counts as unlabelled for its version and its rig.
# Reports {events expired, predictions unlabelled, actuals that never met a prediction}.
SWEEP_LUA = r"""
local ns = ARGV[1]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local unlabelled, orphans = 0, 0
for _, event_id in ipairs(due) do
  local pkey, akey = ns .. 'p:' .. event_id, ns .. 'a:' .. event_id
  local entries = redis.call('HGETALL', pkey)
  local met = false
  for k = 1, #entries, 2 do
    if entries[k + 1] == 'joined' then
      met = true
    else
      local rig = string.match(entries[k + 1], '^([^\31]*)')
      redis.call('HINCRBY', KEYS[2], entries[k], 1)
      redis.call('HINCRBY', KEYS[2], 'rig:' .. rig, 1)
      unlabelled = unlabelled + 1
    end
  end
  if (not met) and redis.call('EXISTS', akey) == 1 then orphans = orphans + 1 end
  redis.call('DEL', pkey, akey)
  redis.call('ZREM', KEYS[1], event_id)
end
return {#due, unlabelled, orphans}
"""
