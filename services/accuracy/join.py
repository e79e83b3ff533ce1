"""The prediction/actual join, as Lua run inside the window store's batch script (atomic, exactly once).

Join state, under the store's namespace ``NS``, one hash per event at
``NS:e:<event key>`` (:func:`event_key`: a fixed-length digest of the event id):

- field ``""``: the first actual's payload (kept until expiry, so a later
  prediction of another model version joins it too);
- field ``<model version>``: the prediction's payload, marked with a leading
  :data:`JOINED` once its label came (kept, so a re-sent prediction is not
  counted twice, and a later prediction of another version is compared with it);

and ``NS:expiry``: sorted set event key -> event time after which the hash goes.

A joined pair is appended to the window (of its subject: model version, and
``rig:<rig_id>``) that holds its *label time*, max(event time, observed time),
as one item: the prediction payload and the actual payload. New predictions
add to ``predictions`` and ``estimated_correct`` in the window of their event
time. Payloads are fields joined by :data:`SEP` (rig id and event time first,
role last).

Champion and challenger (a prediction of role ``champion`` and one of another
role, of the same event) are compared in windows of subject
``cmp:<champion>/<challenger>`` (:func:`comparison_subject`): when the second of
the two predictions comes, ``compared`` (pairs), ``agreements`` (same label)
and both estimates are added in the window of its event time; when the last of
the two predictions and the label comes, an item (champion payload, challenger
payload, actual payload) goes to the window of the label time.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "ACTUAL",
    "COMPARISON",
    "JOINED",
    "JOIN_LUA",
    "SEP",
    "SWEEP_LUA",
    "comparison_subject",
    "comparison_versions",
    "event_key",
]

#: Field separator of payloads and pair items (ASCII unit separator: not in ids).
SEP = "\x1f"
#: Marks a stored prediction that has its label (a payload starts with its rig id, never with this).
JOINED = "+"
#: Subject prefix of champion/challenger comparison windows.
COMPARISON = "cmp:"
#: The field of an event's hash that holds its actual (a model version is never empty).
ACTUAL = ""


def event_key(event_id: str) -> str:
    """The join's key of an event: a 96-bit digest of its id, in hex.

    Producers choose event ids, often long and alike but for their last digits.
    Lua interns every string and hashes a long one from a sample of its bytes
    only, so such ids (and keys made of them) pile up in a few buckets of its
    string table; short uniform keys do not, and take less memory.

    >>> event_key("run-1-rig-03-12345")
    'fa75ec41e44098db30a96832'
    """
    return hashlib.blake2b(event_id.encode(), digest_size=12).hexdigest()


def comparison_subject(champion: str, challenger: str) -> str:
    """The window subject comparing two versions; :func:`comparison_versions` reads it back.

    >>> comparison_subject("a1", "b2")
    'cmp:a1/b2'
    """
    return f"{COMPARISON}{champion}/{challenger}"


def comparison_versions(subject: str) -> tuple[str, str] | None:
    """(champion, challenger) of a comparison subject, None for any other subject.

    >>> comparison_versions("cmp:a1/b2"), comparison_versions("rig:7")
    (('a1', 'b2'), None)
    """
    if not subject.startswith(COMPARISON):
        return None
    champion, _, challenger = subject.removeprefix(COMPARISON).partition("/")
    return champion, challenger


# Arguments after the store's own: namespace, window size, horizon, then
# n_predictions x (event key, version, event_ms, estimated p(correct), payload),
# then n_actuals x (event key, observed_ms, payload).
# Reports {joined pairs, duplicate predictions, duplicate actuals}.
#
# Per record the script only touches the event's hash, in two calls: an HGETALL (its
# actual, the other versions' predictions; this version there already: a duplicate) and one
# HSET: of the prediction, marked joined when the actual was there; or of the actual, which
# marks every waiting version joined too. What goes
# into windows is gathered in Lua tables and written at the end, per window in the order
# first touched: open_window() once with the window's record count (late records count as
# before), one HINCRBY per counter, one HINCRBYFLOAT of the window's summed estimates, the
# pair items by RPUSH in chunks; the expiry times go by ZADD GT in chunks. The estimates are
# summed in doubles here, not in Redis' long double one by one, so ``estimated_correct`` can
# differ in its last digits from a record-by-record sum (far below what an estimate means).
JOIN_LUA = r"""
-- Start from a swept table: the previous call's garbage strings would lengthen every
-- lookup in Lua's string table.
collectgarbage('collect')
local ns = ARGV[i]
local size, horizon = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
i = i + 3
local joined, dup_predictions, dup_actuals = 0, 0, 0
-- Chunk size of unpack(): very many values would overflow Lua's C stack.
local CHUNK = 1000

local function window_start(t) return t - t % size end

-- Gathered window updates: subject -> start -> updates, and the windows in the order first touched.
local windows, touched = {}, {}

-- A window's gathered updates, with one more record counted for it.
local function window(subject, start)
  local by_start = windows[subject]
  if not by_start then
    by_start = {}
    windows[subject] = by_start
  end
  local w = by_start[start]
  if w then
    w.records = w.records + 1
  else
    -- fields: the counters in the order first added (a hash keeps its fields in that order).
    w = {subject = subject, start = start, records = 1, fields = {}, predictions = 0, estimated = 0,
         labelled = 0, items = {}, compared = 0, agreements = 0, estimated_challenger = 0}
    by_start[start] = w
    touched[#touched + 1] = w
  end
  return w
end

local function count_prediction(subject, start, estimate)
  local w = window(subject, start)
  if w.predictions == 0 then w.fields[#w.fields + 1] = 'predictions' end
  w.predictions = w.predictions + 1
  w.estimated = w.estimated + estimate
end

local function count_pair(subject, start, item)
  local w = window(subject, start)
  if w.labelled == 0 then w.fields[#w.fields + 1] = 'labelled' end
  w.labelled = w.labelled + 1
  w.items[w.labelled] = item
end

local function label_start(event_ms, actual)
  local observed_ms = tonumber(string.match(actual, '^[^\31]*\31([^\31]*)'))
  return window_start(math.max(event_ms, observed_ms))
end

local function pair(version, prediction, actual)
  local rig, event_ms = string.match(prediction, '^([^\31]*)\31([^\31]*)')
  local start = label_start(tonumber(event_ms), actual)
  local item = prediction .. '\31' .. actual
  count_pair(version, start, item)
  count_pair('rig:' .. rig, start, item)
  joined = joined + 1
end

-- Champion and challenger: (subject, champion payload, challenger payload) of two predictions
-- of one event, or nil unless exactly one of them is the champion.
-- The role is the payload's last field: compared by its end, not found by a pattern.
local function is_champion(payload) return string.sub(payload, -9) == '\31champion' end

local function rivals(version, prediction, other_version, other)
  local champion, other_champion = is_champion(prediction), is_champion(other)
  if champion == other_champion then return nil end  -- two champions, or two others
  if champion then
    return 'cmp:' .. version .. '/' .. other_version, prediction, other
  end
  return 'cmp:' .. other_version .. '/' .. version, other, prediction
end

-- The second prediction of a champion/challenger pair came: counted in its event time's window.
local function compare_predictions(subject, champion, challenger, event_ms)
  local w = window(subject, window_start(event_ms))
  if w.compared == 0 then w.fields[#w.fields + 1] = 'compared' end
  -- Payload fields 3 and 5: the predicted class and the estimate.
  local fields = '^[^\31]*\31[^\31]*\31([^\31]*)\31[^\31]*\31([^\31]*)'
  local label, estimate = string.match(champion, fields)
  local other_label, other_estimate = string.match(challenger, fields)
  w.compared = w.compared + 1
  if label == other_label then w.agreements = w.agreements + 1 end
  w.estimated = w.estimated + tonumber(estimate)
  w.estimated_challenger = w.estimated_challenger + tonumber(other_estimate)
end

-- Both predictions and the label are there: one item in the window of the label time.
local function compare_labelled(subject, champion, challenger, actual)
  local event_ms = tonumber(string.match(champion, '^[^\31]*\31([^\31]*)'))
  count_pair(subject, label_start(event_ms, actual), champion .. '\31' .. challenger .. '\31' .. actual)
end

-- Expiry times as ZADD arguments (score, member, ...), added once at the end.
local expiry = {}
local function expire_after(event, t)
  expiry[#expiry + 1] = t + horizon
  expiry[#expiry + 1] = event
end

-- A stored prediction without its joined mark.
local function unmarked(value)
  if string.sub(value, 1, 1) == '+' then return string.sub(value, 2) end
  return value
end

local n = tonumber(ARGV[i]); i = i + 1
for k = 1, n do
  local event, version, event_ms = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local estimate, payload = tonumber(ARGV[i + 3]), ARGV[i + 4]
  i = i + 5
  local key = ns .. 'e:' .. event
  local entries, actual, seen = redis.call('HGETALL', key), nil, false
  for e = 1, #entries, 2 do
    if entries[e] == '' then actual = entries[e + 1] elseif entries[e] == version then seen = true end
  end
  if seen then
    dup_predictions = dup_predictions + 1
  else
    -- Marked joined at once when its label is already there.
    redis.call('HSET', key, version, actual and ('+' .. payload) or payload)
    local rig = string.match(payload, '^([^\31]*)')
    local start = window_start(event_ms)
    count_prediction(version, start, estimate)
    count_prediction('rig:' .. rig, start, estimate)
    if actual then pair(version, payload, actual) end
    for e = 1, #entries, 2 do
      if entries[e] ~= '' then
        local subject, champion, challenger = rivals(version, payload, entries[e], unmarked(entries[e + 1]))
        if subject then
          compare_predictions(subject, champion, challenger, event_ms)
          if actual then compare_labelled(subject, champion, challenger, actual) end
        end
      end
    end
    expire_after(event, event_ms)
  end
end

n = tonumber(ARGV[i]); i = i + 1
for k = 1, n do
  local event, observed_ms, payload = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  i = i + 3
  local key = ns .. 'e:' .. event
  local entries, marks, waiting = redis.call('HGETALL', key), {'', payload}, {}
  local labelled = false
  for e = 1, #entries, 2 do
    if entries[e] == '' then labelled = true; break end
    -- No actual yet, so no prediction is marked joined.
    marks[#marks + 1] = entries[e]
    marks[#marks + 1] = '+' .. entries[e + 1]
    waiting[#waiting + 1] = e
  end
  if labelled then
    dup_actuals = dup_actuals + 1  -- the first label of an event wins
  else
    redis.call('HSET', key, unpack(marks))
    for a, e in ipairs(waiting) do
      pair(entries[e], entries[e + 1], payload)
      for b = a + 1, #waiting do
        local f = waiting[b]
        local subject, champion, challenger = rivals(entries[e], entries[e + 1], entries[f], entries[f + 1])
        if subject then compare_labelled(subject, champion, challenger, payload) end
      end
    end
    expire_after(event, observed_ms)
  end
end

for _, w in ipairs(touched) do
  local key = open_window(w.subject, w.start, w.records)
  if key then
    for _, field in ipairs(w.fields) do
      if field == 'predictions' then
        redis.call('HINCRBY', key, 'predictions', w.predictions)
        -- As text with 17 digits: the double's exact value, whatever Redis does with a number.
        redis.call('HINCRBYFLOAT', key, 'estimated_correct', string.format('%.17g', w.estimated))
      elseif field == 'compared' then
        redis.call('HINCRBY', key, 'compared', w.compared)
        redis.call('HINCRBY', key, 'agreements', w.agreements)
        redis.call('HINCRBYFLOAT', key, 'estimated_champion', string.format('%.17g', w.estimated))
        local challenger = string.format('%.17g', w.estimated_challenger)
        redis.call('HINCRBYFLOAT', key, 'estimated_challenger', challenger)
      else
        redis.call('HINCRBY', key, 'labelled', w.labelled)
      end
    end
    for first = 1, #w.items, CHUNK do
      redis.call('RPUSH', key .. ':items', unpack(w.items, first, math.min(first + CHUNK - 1, #w.items)))
    end
  end
end
for first = 1, #expiry, CHUNK do
  redis.call('ZADD', ns .. 'expiry', 'GT', unpack(expiry, first, math.min(first + CHUNK - 1, #expiry)))
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
local unlabelled, orphans, counts, subjects = 0, 0, {}, {}
local function count(subject)
  if not counts[subject] then
    counts[subject] = 0
    subjects[#subjects + 1] = subject
  end
  counts[subject] = counts[subject] + 1
end
local keys = {}
for k, event in ipairs(due) do
  keys[k] = ns .. 'e:' .. event
  local entries = redis.call('HGETALL', keys[k])
  local met, labelled = false, false
  for e = 1, #entries, 2 do
    if entries[e] == '' then
      labelled = true
    elseif string.sub(entries[e + 1], 1, 1) == '+' then
      met = true
    else
      count(entries[e])
      count('rig:' .. string.match(entries[e + 1], '^([^\31]*)'))
      unlabelled = unlabelled + 1
    end
  end
  if labelled and not met then orphans = orphans + 1 end
end
for _, subject in ipairs(subjects) do redis.call('HINCRBY', KEYS[2], subject, counts[subject]) end
-- The due events are the lowest-scored members: removed by rank, their hashes in chunks.
if #due > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #due - 1) end
for first = 1, #keys, 1000 do
  redis.call('DEL', unpack(keys, first, math.min(first + 999, #keys)))
end
return {#due, unlabelled, orphans}
"""
