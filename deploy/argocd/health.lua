-- Argo CD health of a ricochet LoadTestRun (ricochet.dev/v1alpha1): the gate where
-- releases are promoted. Argo CD sets `obj` (the object) and reads the returned `hs`.
--   no status yet, phase Pending or Running -> Progressing (the message names the phase)
--   phase Passed -> Healthy
--   phase Failed -> Degraded: each threshold not passed and the value observed, or why the
--                   run could not be carried out (the Failed condition's reason)
--   any other phase -> Progressing, naming it
-- Argo CD runs this in gopher-lua (Lua 5.1): keep to Lua 5.1. argocd-cm-snippet.yaml holds
-- the same text; loadgen/operator/tests/operator/argocd_health.rs checks both.
local hs = {}

local function condition(status, kind)
  for _, c in ipairs(status.conditions or {}) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

-- Each threshold whose verdict is not Pass, as a phrase.
local function not_passed(status)
  local out = {}
  for _, t in ipairs(status.thresholds or {}) do
    if t.verdict ~= "Pass" then
      local what = (t.metric or "?") .. " " .. (t.condition or "?")
      if t.verdict == "Fail" then
        what = what .. " failed (observed " .. (t.observed or "nothing") .. ")"
      else
        what = what .. " could not be judged (" .. (t.reason or "no reason given") .. ")"
      end
      table.insert(out, what)
    end
  end
  return out
end

local status = obj.status or {}
local phase = status.phase
if phase == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the ricochet operator to start the run"
elseif phase == "Pending" or phase == "Running" then
  hs.status = "Progressing"
  hs.message = phase .. ": " .. (status.message or "the run is under way")
elseif phase == "Passed" then
  hs.status = "Healthy"
  hs.message = "Passed: " .. (status.message or "every threshold passed")
elseif phase == "Failed" then
  hs.status = "Degraded"
  local failed = condition(status, "Failed")
  local code = failed and failed.reason
  local unpassed = not_passed(status)
  local parts = {}
  if #unpassed == 0 or (code ~= nil and code ~= "ThresholdsFailed") then
    local label = "the run could not be carried out"
    if code ~= nil and code ~= "" then
      label = label .. " (" .. code .. ")"
    end
    local why = status.message or (failed and failed.message) or "no reason given"
    table.insert(parts, label .. ": " .. why)
  end
  if #unpassed > 0 then
    local of = #(status.thresholds or {})
    table.insert(parts, #unpassed .. " of " .. of .. " thresholds not passed: " .. table.concat(unpassed, "; "))
  end
  hs.message = "Failed: " .. table.concat(parts, "; ")
else
  hs.status = "Progressing"
  hs.message = "phase " .. tostring(phase) .. " is not one this health check knows (Pending, Running, Passed, Failed)"
end
return hs
