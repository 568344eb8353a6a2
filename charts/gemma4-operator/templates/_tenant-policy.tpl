{{/*
The engine images the operator's catalog pins (operator/gemma4_operator/catalog/engines.yaml): a spec may always
name them in spec.serving.image. tests/packaging/test_tenant_policy_chart.py keeps this list equal to the catalog.
*/}}
{{- define "gemma4-operator.catalogEngineImages" -}}
- vllm/vllm-openai:v0.32.0
- ghcr.io/ggml-org/llama.cpp:server-cuda-b11434
- ghcr.io/ggml-org/llama.cpp:server-b11434
{{- end }}

{{/* Images always allowed in spec.serving.image: the catalog's and operator.images, one per line. */}}
{{- define "gemma4-operator.alwaysAllowedImages" -}}
{{- $images := include "gemma4-operator.catalogEngineImages" . | fromYamlArray }}
{{- range $key, $image := .Values.operator.images }}
{{- if $image }}{{ $images = append $images $image }}{{ end }}
{{- end }}
{{- join "\n" (uniq $images) }}
{{- end }}

{{/* The tenant policy as the operator reads it (--tenant-policy / GEMMA4_TENANT_POLICY): the Helm values. */}}
{{- define "gemma4-operator.tenantPolicyJson" -}}
{{- omit .Values.tenantPolicy "admission" | toJson }}
{{- end }}

{{/* The end of every refusal: the Helm value that allows what was refused. */}}
{{- define "gemma4-operator.allowedBy" -}}
is not allowed by the tenant policy; an administrator allows it with the Helm value tenantPolicy.{{ . }}
{{- end }}
