-- Argo CD health check for serving.gemma4.dev/Gemma4Deployment.
-- Install: the argocd-cm key resource.customizations.health.serving.gemma4.dev_Gemma4Deployment
-- (argocd-cm.yaml next to this file), or bundle this directory as
-- resource_customizations/serving.gemma4.dev/Gemma4Deployment/ in Argo CD.
-- Order: deletion, no status yet, spec not yet observed, plan failure, Degraded (a failed model download
-- included), scaled to zero, the model downloading, Ready, otherwise Progressing. Conditions written for an older generation do not count.
local hs = {}

-- A condition's message, else its reason, else the fallback.
local function message_of(condition, fallback)
  if condition ~= nil then
    if condition.message ~= nil and condition.message ~= "" then
      return condition.message
    end
    if condition.reason ~= nil and condition.reason ~= "" then
      return condition.reason
    end
  end
  return fallback
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Pending deletion"
  if obj.metadata.finalizers ~= nil and #obj.metadata.finalizers > 0 then
    hs.message = "Pending deletion; blocked by finalizers: " .. table.concat(obj.metadata.finalizers, ", ")
  end
  return hs
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for gemma4-operator to reconcile this Gemma4Deployment"
  return hs
end

local generation = 0
if obj.metadata ~= nil and obj.metadata.generation ~= nil then
  generation = obj.metadata.generation
end
local observed = obj.status.observedGeneration or 0
if observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for gemma4-operator to observe generation " .. generation .. " (last observed: " .. observed .. ")"
  return hs
end

-- Current conditions by type; one whose observedGeneration is older than the spec is ignored.
local conditions = {}
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    local seen = condition.observedGeneration
    if condition.type ~= nil and (seen == nil or seen == 0 or seen >= generation) then
      conditions[condition.type] = condition
    end
  end
end

local planned = conditions["Planned"]
if planned ~= nil and planned.status == "False" then
  hs.status = "Degraded"
  hs.message = "No serving plan: " .. message_of(planned, "the planner refused the spec")
  return hs
end

local degraded = conditions["Degraded"]
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = message_of(degraded, "Degraded")
  return hs
end
if obj.status.phase == "Failed" or obj.status.phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = "Phase " .. obj.status.phase
  return hs
end

local model = obj.status.model
if model ~= nil and model.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = "Model download failed: " .. message_of(conditions["ModelReady"], "see condition ModelReady")
  return hs
end

if obj.spec ~= nil and obj.spec.autoscaling == nil and obj.spec.replicas == 0 then
  hs.status = "Suspended"
  hs.message = "Scaled to zero (spec.replicas is 0)"
  return hs
end

if model ~= nil and model.phase == "Downloading" then
  hs.status = "Progressing"
  hs.message = "Downloading the model: " .. message_of(conditions["ModelReady"], model.checkpoint or "")
  return hs
end

local ready = conditions["Ready"]
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message_of(ready, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = message_of(conditions["Progressing"], message_of(ready, "Waiting for the serving pods to become ready"))
return hs
