-- Argo CD health check for AutomatedBuild (the kstatus conditions of docs/design.md). Install it
-- as resource.customizations.health.autobuild.dev_AutomatedBuild in argocd-cm (docs/install.md).
-- Ready=True -> Healthy; Stalled=True or a failed latest build -> Degraded; else Progressing.
local function describe(condition)
  local reason, message = condition.reason or "", condition.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  return reason .. message
end

local hs = {status = "Progressing", message = "waiting for the operator"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  return hs
end
local by_type = {}
for _, condition in ipairs(obj.status.conditions) do
  by_type[condition.type] = condition
end
local stalled, ready, reconciling = by_type["Stalled"], by_type["Ready"], by_type["Reconciling"]
if stalled ~= nil and stalled.status == "True" then
  return {status = "Degraded", message = describe(stalled)}
end
if ready ~= nil and ready.status == "False" and ready.reason == "BuildFailed" then
  return {status = "Degraded", message = describe(ready)}
end
if reconciling ~= nil and reconciling.status == "True" then
  return {status = "Progressing", message = describe(reconciling)}
end
if ready ~= nil and ready.status == "True" then
  return {status = "Healthy", message = describe(ready)}
end
if ready ~= nil then
  return {status = "Progressing", message = describe(ready)}
end
return hs
