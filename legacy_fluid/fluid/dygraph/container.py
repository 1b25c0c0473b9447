"""``paddle.fluid.dygraph.container`` of 1.8: ``Sequential``, ``LayerList``, ``ParameterList``.

Built on the legacy :class:`~legacy_fluid.fluid.dygraph.layers.Layer`, so ``eval()`` on a
container also switches gradient recording off, as in 1.8.
"""

from legacy_fluid.fluid import _support
from legacy_fluid.fluid.dygraph.layers import Layer

__all__ = ["Sequential", "LayerList", "ParameterList"]


class Sequential(Layer):
    """``Sequential(*layers)``: layers (named ``'0'``, ``'1'``, ...) or ``(name, layer)`` pairs, run in order."""

    def __init__(self, *layers):
        super(Sequential, self).__init__()
        if layers and isinstance(layers[0], tuple):
            for name, layer in layers:
                self.add_sublayer(name, layer)
        else:
            for index, layer in enumerate(layers):
                self.add_sublayer(str(index), layer)

    def __getitem__(self, name):
        if isinstance(name, slice):
            return self.__class__(*list(self._sub_layers.values())[name])
        if isinstance(name, int):
            if not -len(self) <= name < len(self):
                raise IndexError("index {} is out of range".format(name))
            return list(self._sub_layers.values())[name]
        return self._sub_layers[name]

    def __setitem__(self, name, layer):
        self.add_sublayer(str(name), layer)

    def __delitem__(self, name):
        del self._sub_layers[str(name)]

    def __len__(self):
        return len(self._sub_layers)

    def forward(self, input):
        for layer in self._sub_layers.values():
            input = layer(input)
        return input


class LayerList(Layer):
    """``LayerList(sublayers=None)``: a list of layers whose parameters are registered."""

    def __init__(self, sublayers=None):
        super(LayerList, self).__init__()
        if sublayers is not None:
            for index, layer in enumerate(sublayers):
                self.add_sublayer(str(index), layer)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.__class__(list(self._sub_layers.values())[index])
        return list(self._sub_layers.values())[index]

    def __setitem__(self, index, layer):
        key = list(self._sub_layers.keys())[index]
        setattr(self, key, layer)

    def __delitem__(self, index):
        layers = list(self._sub_layers.values())
        del layers[index]
        self._sub_layers.clear()
        for i, layer in enumerate(layers):
            self.add_sublayer(str(i), layer)

    def __len__(self):
        return len(self._sub_layers)

    def __iter__(self):
        return iter(self._sub_layers.values())

    def append(self, sublayer):
        """Add ``sublayer`` at the end."""
        self.add_sublayer(str(len(self)), sublayer)
        return self

    def insert(self, index, sublayer):
        """Insert ``sublayer`` before ``index``."""
        layers = list(self._sub_layers.values())
        layers.insert(index, sublayer)
        self._sub_layers.clear()
        for i, layer in enumerate(layers):
            self.add_sublayer(str(i), layer)

    def extend(self, sublayers):
        """Append every layer of ``sublayers``."""
        for layer in sublayers:
            self.append(layer)
        return self


class ParameterList(Layer):
    """``ParameterList(parameters=None)``: a list of parameters registered on the layer."""

    def __init__(self, parameters=None):
        super(ParameterList, self).__init__()
        if parameters is not None:
            for index, param in enumerate(parameters):
                self.add_parameter(str(index), param)

    def __getitem__(self, index):
        return list(self._parameters.values())[index]

    def __setitem__(self, index, param):
        setattr(self, str(index), param)

    def __len__(self):
        return len(self._parameters)

    def __iter__(self):
        return iter(self._parameters.values())

    def append(self, parameter):
        """Add ``parameter`` at the end."""
        self.add_parameter(str(len(self._parameters)), parameter)
        return self


__getattr__ = _support.module_getattr(__name__)
