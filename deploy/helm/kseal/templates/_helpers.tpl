{{/* The release's full name: the release name, or release-kseal. */}}
{{- define "kseal.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kseal.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: proxy
{{- end -}}

{{- define "kseal.labels" -}}
{{ include "kseal.selectorLabels" . }}
app.kubernetes.io/version: {{ include "kseal.tag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "kseal.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "kseal.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "kseal.fullname" .) -}}
{{- end -}}

{{/* The port of a host:port listen address. */}}
{{- define "kseal.adminPort" -}}
{{- regexReplaceAll "^.*:" .Values.config.admin.listen "" -}}
{{- end -}}

{{/*
kseal's client listeners, from config.virtualClusters, as a YAML list of
{name, port, servicePort}: each virtual cluster's bootstrap port and, without
SNI, a port per broker. servicePort is the number kseal advertises for it.
Port names: bootstrap and broker-N for a single virtual cluster, vcI-bs and
vcI-bN with several (port names are at most 15 characters).
*/}}
{{- define "kseal.kafkaPorts" -}}
{{- $vcs := .Values.config.virtualClusters -}}
{{- $single := eq (len $vcs) 1 -}}
{{- range $i, $vc := $vcs -}}
{{- $g := $vc.gateway -}}
{{- $sni := and (hasKey $g "sni") (get $g "sni") -}}
{{- $adv := $g.bootstrapPort -}}
{{- if $sni }}{{ $adv = $g.sni.advertisedPort }}{{ end }}
- name: {{ ternary "bootstrap" (printf "vc%d-bs" $i) $single }}
  port: {{ $g.bootstrapPort }}
  servicePort: {{ $adv }}
{{- if not $sni }}
{{- range $n := until (int $g.brokerPortCount) }}
- name: {{ ternary (printf "broker-%d" $n) (printf "vc%d-b%d" $i $n) $single }}
  port: {{ add $g.brokerPortStart $n }}
  servicePort: {{ add $g.brokerPortStart $n }}
{{- end }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* The mount directory of kms.secretName's keys. */}}
{{- define "kseal.kmsDir" -}}/var/run/secrets/kseal/kms{{- end -}}
{{- define "kseal.storeDir" -}}/var/lib/kseal/store{{- end -}}

{{/* The keys of kms.secretName the KMS needs, one per line. */}}
{{- define "kseal.kmsSecretKeys" -}}
{{- $k := .Values.kms -}}
{{- if eq $k.type "vault" }}
- {{ $k.vault.tokenKey }}
{{- if $k.vault.caKey }}
- {{ $k.vault.caKey }}
{{- end }}
{{- else if eq $k.type "aws" }}
{{- if eq $k.aws.credentials "static" }}
- {{ $k.aws.accessKeyIdKey }}
- {{ $k.aws.secretAccessKeyKey }}
{{- end }}
{{- else if eq $k.type "azure" }}
{{- if eq $k.azure.auth "clientSecret" }}
- {{ $k.azure.clientSecretKey }}
{{- end }}
{{- else if eq $k.type "local" }}
- {{ $k.local.masterKeyKey }}
{{- if eq $k.local.store "secret" }}
- {{ $k.local.storeKey }}
{{- end }}
{{- end }}
{{- end -}}

{{/* kms: {type, config} for the config file, from .Values.kms. */}}
{{- define "kseal.kmsConfig" -}}
{{- $k := .Values.kms -}}
{{- $dir := include "kseal.kmsDir" . -}}
{{- if eq $k.type "vault" -}}
{{- $c := dict "address" $k.vault.address "tokenFile" (printf "%s/%s" $dir $k.vault.tokenKey) "renewToken" $k.vault.renewToken -}}
{{- if $k.vault.caKey }}{{ $_ := set $c "tls" (dict "caFile" (printf "%s/%s" $dir $k.vault.caKey)) }}{{ end -}}
{{- dict "type" "vault" "config" (mergeOverwrite $c (deepCopy $k.vault.config)) | toYaml -}}
{{- else if eq $k.type "aws" -}}
{{- $c := dict "region" $k.aws.region -}}
{{- if $k.aws.endpoint }}{{ $_ := set $c "endpoint" $k.aws.endpoint }}{{ end -}}
{{- if eq $k.aws.credentials "static" -}}
{{- $_ := set $c "credentials" (dict "source" "static" "accessKeyIdFile" (printf "%s/%s" $dir $k.aws.accessKeyIdKey) "secretAccessKeyFile" (printf "%s/%s" $dir $k.aws.secretAccessKeyKey)) -}}
{{- else if or (eq $k.aws.credentials "default") (eq $k.aws.credentials "env") -}}
{{- $_ := set $c "credentials" (dict "source" $k.aws.credentials) -}}
{{- else -}}
{{- fail (printf "kms.aws.credentials %q: want default, env or static" $k.aws.credentials) -}}
{{- end -}}
{{- dict "type" "aws" "config" (mergeOverwrite $c (deepCopy $k.aws.config)) | toYaml -}}
{{- else if eq $k.type "azure" -}}
{{- $auth := dict "method" $k.azure.auth -}}
{{- if eq $k.azure.auth "clientSecret" -}}
{{- $_ := set $auth "tenantId" (required "kms.azure.tenantId is required for clientSecret" $k.azure.tenantId) -}}
{{- $_ := set $auth "clientId" (required "kms.azure.clientId is required for clientSecret" $k.azure.clientId) -}}
{{- $_ := set $auth "clientSecretFile" (printf "%s/%s" $dir $k.azure.clientSecretKey) -}}
{{- else if eq $k.azure.auth "managedIdentity" -}}
{{- if $k.azure.clientId }}{{ $_ := set $auth "clientId" $k.azure.clientId }}{{ end -}}
{{- else -}}
{{- fail (printf "kms.azure.auth %q: want clientSecret or managedIdentity" $k.azure.auth) -}}
{{- end -}}
{{- $c := dict "auth" $auth -}}
{{- if $k.azure.vaultName }}{{ $_ := set $c "vaultName" $k.azure.vaultName }}{{ end -}}
{{- dict "type" "azure" "config" (mergeOverwrite $c (deepCopy $k.azure.config)) | toYaml -}}
{{- else if eq $k.type "local" -}}
{{- $store := printf "%s/%s" $dir $k.local.storeKey -}}
{{- if eq $k.local.store "pvc" }}{{ $store = printf "%s/%s" (include "kseal.storeDir" .) $k.local.pvc.fileName }}
{{- else if ne $k.local.store "secret" }}{{ fail (printf "kms.local.store %q: want secret or pvc" $k.local.store) }}{{ end -}}
{{- dict "type" "local" "config" (dict "keyStore" $store "masterKeyFile" (printf "%s/%s" $dir $k.local.masterKeyKey) "reloadInterval" $k.local.reloadInterval) | toYaml -}}
{{- else if ne $k.type "none" -}}
{{- fail (printf "kms.type %q: want vault, aws, azure, local or none" $k.type) -}}
{{- end -}}
{{- end -}}

{{/* config with kms added to every encryption section that has none. */}}
{{- define "kseal.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $kms := include "kseal.kmsConfig" . | fromYaml -}}
{{- range $vc := $cfg.virtualClusters -}}
{{- if and $kms (hasKey $vc "encryption") -}}
{{- if not (hasKey $vc.encryption "kms") -}}
{{- $_ := set $vc.encryption "kms" $kms -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
