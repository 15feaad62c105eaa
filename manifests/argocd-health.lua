-- Argo CD health check for AutomatedBuild (kstatus conditions). Install it as
-- resource.customizations.health.autobuild.dev_AutomatedBuild in argocd-cm.
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
  return {status = "Degraded", message = stalled.reason .. ": " .. stalled.message}
end
if ready ~= nil and ready.status == "False" and ready.reason == "BuildFailed" then
  return {status = "Degraded", message = ready.message}
end
if reconciling ~= nil and reconciling.status == "True" then
  return {status = "Progressing", message = reconciling.message}
end
if ready ~= nil and ready.status == "True" then
  return {status = "Healthy", message = ready.message}
end
if ready ~= nil then
  return {status = "Progressing", message = ready.reason .. ": " .. ready.message}
end
return hs
