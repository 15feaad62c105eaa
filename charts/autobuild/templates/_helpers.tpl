{{/*
Expand the name of the chart.
*/}}
{{- define "autobuild.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name (at most 63 characters: a DNS label).
If the release name contains the chart name it is used as the full name.
*/}}
{{- define "autobuild.fullname" -}}
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

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "autobuild.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "autobuild.labels" -}}
helm.sh/chart: {{ include "autobuild.chart" . }}
{{ include "autobuild.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "autobuild.selectorLabels" -}}
app.kubernetes.io/name: {{ include "autobuild.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "autobuild.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "autobuild.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: repository:tag (the appVersion by default), or repository@digest.
*/}}
{{- define "autobuild.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if eq $tag "latest" }}
{{- fail "image.tag: name a version, not latest (the operator and its CRD must match)" }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
Namespaced permissions: granted cluster-wide (ClusterRole) or per watched namespace (Role).
The operator never writes spec: it patches status, creates/patches/deletes its build Jobs,
posts Events and watches Secrets (keeping only those an AutomatedBuild references).
*/}}
{{- define "autobuild.namespacedRules" -}}
# patch: metadata.finalizers only, never spec. The GitHub webhook's finalizer must stay
# removable even after webhook registration is turned off.
- apiGroups: [autobuild.dev]
  resources: [automatedbuilds]
  verbs: [get, list, watch, patch]
- apiGroups: [autobuild.dev]
  resources: [automatedbuilds/status]
  verbs: [patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.webhook.publicUrl }}
# GitHub webhook registration (webhook.publicUrl): the Secret of a generated webhook secret,
# owned by its AutomatedBuild.
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
{{- end }}
{{- end }}

{{/*
AUTOBUILD_* environment of the operator: a setting is set only when its value is not empty.
*/}}
{{- define "autobuild.settingsEnv" -}}
{{- $b := .Values.builds }}
{{- $settings := list
  (list "AUTOBUILD_EXECUTOR_IMAGE" $b.executorImage)
  (list "AUTOBUILD_CPU_REQUEST" $b.cpuRequest)
  (list "AUTOBUILD_MEMORY_REQUEST" $b.memoryRequest)
  (list "AUTOBUILD_CPU_LIMIT" $b.cpuLimit)
  (list "AUTOBUILD_MEMORY_LIMIT" $b.memoryLimit)
  (list "AUTOBUILD_EPHEMERAL_STORAGE_LIMIT" $b.ephemeralStorageLimit)
  (list "AUTOBUILD_CACHE_TTL" $b.cacheTtl)
  (list "AUTOBUILD_PUSH_RETRY" (toString $b.pushRetry))
  (list "AUTOBUILD_NODE_SELECTOR" (include "autobuild.keyValues" $b.nodeSelector))
  (list "AUTOBUILD_INSECURE_REGISTRIES" (join "," $b.insecureRegistries))
  (list "AUTOBUILD_INSECURE_GIT_HOSTS" (join "," $b.insecureGitHosts))
  (list "AUTOBUILD_INTERNAL_REALM_HOSTS" (join "," $b.internalRealmHosts))
  (list "AUTOBUILD_GITHUB_URL" .Values.github.url)
  (list "AUTOBUILD_DOCKERHUB_URL" .Values.dockerHub.url)
  (list "AUTOBUILD_PUBLIC_URL" .Values.webhook.publicUrl)
  (list "AUTOBUILD_BUILD_URL_TEMPLATE" .Values.webhook.buildUrlTemplate)
  (list "AUTOBUILD_UNHOOK_TIMEOUT" (toString .Values.webhook.unhookTimeout))
}}
{{- range $settings }}
{{- if index . 1 }}
- name: {{ index . 0 }}
  value: {{ index . 1 | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A map as key=value,key=value in key order (AUTOBUILD_NODE_SELECTOR).
*/}}
{{- define "autobuild.keyValues" -}}
{{- $pairs := list }}
{{- range $key, $value := . }}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/*
"true" when the chart installs its ValidatingAdmissionPolicy: admissionPolicy.enabled and the
cluster serves admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (GA and on by default
since Kubernetes 1.30; `helm template` knows no kinds, only its default Kubernetes version).
*/}}
{{- define "autobuild.admissionPolicy" -}}
{{- $served := or (.Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy") (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version) }}
{{- if and .Values.admissionPolicy.enabled $served }}true{{ end }}
{{- end }}
