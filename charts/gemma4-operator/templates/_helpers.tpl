{{/* Chart name, overridable. */}}
{{- define "gemma4-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name. */}}
{{- define "gemma4-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gemma4-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gemma4-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gemma4-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "gemma4-operator.labels" -}}
helm.sh/chart: {{ include "gemma4-operator.chart" . }}
{{ include "gemma4-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: gemma4-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "gemma4-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gemma4-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gemma4-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when the operator watches every namespace (no watchNamespaces). */}}
{{- define "gemma4-operator.clusterwide" -}}
{{- if not .Values.watchNamespaces }}true{{- end }}
{{- end }}

{{/*
RBAC rules for namespaced resources. Cluster-wide mode puts them in the ClusterRole; namespaced
mode in one Role per watched namespace. Verbs are exactly the requests the operator makes (the
RBAC test in tests/packaging/test_rbac.py compares them with the requests recorded by the
integration tests). Children are written with server-side apply, which is a PATCH that also
creates, so there is no `create` or `update`; the only child the operator ever deletes is the
PodDisruptionBudget, when the replicas drop to one. No Secrets: the Hugging Face token reaches
the serving pods through a secretKeyRef that the kubelet resolves, never through the operator.
*/}}
{{- define "gemma4-operator.namespacedRules" -}}
{{- $poll := eq .Values.operator.children "poll" }}
# The API: kopf watches Gemma4Deployments and keeps its progress annotations on them; the
# operator writes the status.
- apiGroups: [serving.gemma4.dev]
  resources: [gemma4deployments]
  verbs: [list, watch, patch]
- apiGroups: [serving.gemma4.dev]
  resources: [gemma4deployments/status]
  verbs: [patch]
# Children: {{ if $poll }}re-read one by one on a timer (--children=poll){{ else }}watched through kopf (--children=watch){{ end }} and applied.
# `get`: {{ if $poll }}each resync reads every child{{ else }}a child the watch has not shown is read before its first apply{{ end }}: an
# object of a child's name that someone else owns is found that way and never written (NameConflict).
# Server-side apply is a PATCH, authorized as `create` when the object does not exist yet.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get{{ if not $poll }}, list, watch{{ end }}, create, patch]
- apiGroups: [""]
  resources: [services, persistentvolumeclaims]
  verbs: [get{{ if not $poll }}, list, watch{{ end }}, create, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get{{ if not $poll }}, list, watch{{ end }}, create, patch, delete]
# The model download Job (storage.modelCache): replaced (deleted, its pods first) when the checkpoint
# changes, deleted when the cache is dropped from the spec.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get{{ if not $poll }}, list, watch{{ end }}, create, patch, delete]
# NetworkPolicies (spec.networkPolicy or operator.networkPolicy): deleted when an object turns its off.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get{{ if not $poll }}, list, watch{{ end }}, create, patch, delete]
# KEDA ScaledObjects (autoscaling.backend keda; only used where KEDA is installed). Deleted when
# an object switches back to the built-in autoscaler.
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get{{ if not $poll }}, list, watch{{ end }}, create, patch, delete]
{{- if ne .Values.operator.engineMonitors "off" }}
# The Prometheus Operator's PodMonitors: one per Gemma4Deployment for its engine pods, only where the
# CRD is served (operator.engineMonitors: off grants nothing). Never deleted by the operator: they go
# with their Gemma4Deployment (ownerReferences).
- apiGroups: [monitoring.coreos.com]
  resources: [podmonitors]
  verbs: [get{{ if not $poll }}, list, watch{{ end }}, create, patch]
{{- end }}
{{- if .Values.routing.enabled }}
# Routing (spec.routing.inferencePool): the InferencePool, the HTTPRoute of mode gateway and the endpoint picker's
# ConfigMap, ServiceAccount and RoleBinding; each deleted when its object turns routing off or changes mode, and so
# are the picker's Deployment and Services (`delete` on those kinds only with routing).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [delete]
- apiGroups: [""]
  resources: [services]
  verbs: [delete]
- apiGroups: [inference.networking.k8s.io]
  resources: [inferencepools]
  verbs: [get{{ if not $poll }}, list, watch{{ end }}, create, patch, delete]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get{{ if not $poll }}, list, watch{{ end }}, create, patch, delete]
- apiGroups: [""]
  resources: [configmaps, serviceaccounts]
  verbs: [get{{ if not $poll }}, list, watch{{ end }}, create, patch, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [rolebindings]
  verbs: [get{{ if not $poll }}, list, watch{{ end }}, create, patch, delete]
# The picker's RoleBinding names the ClusterRole this chart ships for it: the API server lets the operator
# create it with `bind` on that one role, so the operator never holds the picker's verbs itself.
- apiGroups: [rbac.authorization.k8s.io]
  resources: [clusterroles]
  verbs: [bind]
  resourceNames: [{{ include "gemma4-operator.fullname" . }}-epp]
{{- end }}
# Serving pods, read-only: crash loops, image pulls and readiness for the status.
- apiGroups: [""]
  resources: [pods]
  verbs: [list{{ if not $poll }}, watch{{ end }}]
# CPU use of the serving pods from metrics-server, for autoscaling on cpu/utilization.
- apiGroups: [metrics.k8s.io]
  resources: [pods]
  verbs: [list]
# Events about plans, faults and readiness (kopf's and the operator's own, both core/v1); listed only for a
# download Job that has no pod yet, whose FailedCreate Event is the one place the namespace's admission refusal
# of its pods shows.
- apiGroups: [""]
  resources: [events]
  verbs: [create, list]
{{- if and .Values.ha.enabled (not (include "gemma4-operator.clusterwide" .)) }}
# kopf peering (HA): keep-alives in the namespace's KopfPeering.
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [list, watch, patch]
{{- end }}
{{- end }}

{{/* RBAC rules for cluster-scoped resources: always a ClusterRole. */}}
{{- define "gemma4-operator.clusterRules" -}}
{{- if not .Values.operator.accelerators }}
# Cluster facts: which accelerator types the nodes have (read-only; not with operator.accelerators).
- apiGroups: [""]
  resources: [nodes]
  verbs: [list, watch]
{{- end }}
# kopf discovery: notices the CRD being installed, upgraded or removed.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if not (include "gemma4-operator.clusterwide" .) }}
# kopf in namespaced mode lists and watches namespaces to see the watched ones come and go.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- if and .Values.ha.enabled (include "gemma4-operator.clusterwide" .) }}
# kopf peering (HA): keep-alives in the ClusterKopfPeering.
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [list, watch, patch]
{{- end }}
{{- end }}

{{/* "true" when the chart renders the metrics Service: asked for, and the metrics are reachable from outside the
pod (metrics.access localhost binds them to 127.0.0.1). */}}
{{- define "gemma4-operator.metricsService" -}}
{{- if and .Values.metrics.service.enabled (ne .Values.metrics.access "localhost") }}true{{- end }}
{{- end }}

{{/* Refuses `key` (serviceMonitor, prometheusRule) with metrics.access localhost: nothing could scrape them. */}}
{{- define "gemma4-operator.needsScrapableMetrics" -}}
{{- if eq .root.Values.metrics.access "localhost" }}
{{- fail (printf "metrics.%s.enabled needs metrics.access networkPolicy or open: with localhost the operator's metrics listen on 127.0.0.1 inside its pod, where Prometheus cannot scrape them" .key) }}
{{- end }}
{{- end }}

{{/* The namespaces whose pods may scrape the operator's metrics (metrics.access networkPolicy), as a JSON list:
metrics.allowedNamespaces and the release's own. */}}
{{- define "gemma4-operator.metricsNamespaces" -}}
{{- append .Values.metrics.allowedNamespaces .Release.Namespace | uniq | toJson }}
{{- end }}
