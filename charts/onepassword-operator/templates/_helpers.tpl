{{- define "onepassword-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "onepassword-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "onepassword-operator.labels" -}}
app.kubernetes.io/name: {{ include "onepassword-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "onepassword-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "onepassword-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "onepassword-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "onepassword-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "onepassword-operator.tokenSecret" -}}
{{- if .Values.connect.token.existingSecret -}}
{{- .Values.connect.token.existingSecret -}}
{{- else -}}
{{- printf "%s-connect-token" (include "onepassword-operator.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
Exactly what the operator calls, resource by resource (README: "Permissions").
*/}}
{{- define "onepassword-operator.rules" -}}
- apiGroups: [onepassword.com]
  resources: [onepassworditems]
  # watch the resources; create/patch: apply the items managed for annotated workloads, and
  # remove the Go operator's finalizer; delete: managed items of workloads whose annotations
  # were removed.
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [onepassword.com]
  resources: [onepassworditems/status]
  verbs: [patch]
- apiGroups: [onepassword.com]
  # connections of tenants: watched, their status written; their token Secrets are read
  # with the `get` on secrets below.
  resources: [onepasswordconnects]
  verbs: [get, list, watch]
- apiGroups: [onepassword.com]
  resources: [onepasswordconnects/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [secrets]
  # create/patch: server-side apply (and removing the Go operator's finalizer); delete: a
  # type change recreates the Secret. No `update` on onepassworditems/finalizers: Secrets'
  # ownerReferences do not set blockOwnerDeletion, so OpenShift's
  # OwnerReferencesPermissionEnforcement asks for nothing more.
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create]
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  # list: find the consumers of a changed Secret; patch: restart them, and remove the Go
  # operator's finalizer; watch: annotated workloads.
  verbs: [{{ if .Values.operator.annotatedWorkloads }}get, list, watch, patch{{ else }}list, patch{{ end }}]
{{- end -}}
